/**
 * The micro-benchmarks (bench/micro) cannot rot unnoticed: every case runs a few calls against
 * the built dist/, and the runner, when bench/'s own dependencies are installed, completes a
 * run of a few milliseconds per case (two groups that need neither an RSA key nor the config loader) and reports each case.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

type Case = { group: string; name: string; run(n: number): number | Promise<number> };
type CasesModule = { loadCases(): Promise<{ cases: Case[]; close(): Promise<void> }> };

describe('micro-benchmarks', () => {
  it('run every case against dist/', async () => {
    // plain JS outside the TypeScript project: imported by URL
    const url = pathToFileURL(path.join(REPO, 'bench/micro/cases.js')).href;
    const { loadCases } = (await import(url)) as CasesModule;
    const { cases, close } = await loadCases();
    try {
      const groups = new Set(cases.map((c) => c.group));
      expect([...groups]).toEqual(['route', 'jwt', 'limit', 'balancer', 'headers', 'observability']);
      for (const c of cases) {
        const result = await c.run(3);
        expect(Number.isFinite(result), `${c.group}: ${c.name}`).toBe(true);
      }
    } finally {
      await close();
    }
  });

  it.skipIf(!existsSync(path.join(REPO, 'bench/node_modules/tinybench')))(
    'runner: a short run of two groups reports each of their cases (bench/ dependencies installed)',
    async () => {
      const { stdout } = await promisify(execFile)(
        process.execPath,
        [path.join(REPO, 'bench/micro/run.js'), '--json', 'route', 'headers'],
        {
          env: { ...process.env, MICRO_TIME: '2', MICRO_WARMUP: '1', MICRO_SAMPLE_NS: '2000' },
          timeout: 15_000,
        },
      );
      const report = JSON.parse(stdout) as {
        settings: { node: string };
        results: { group: string; name: string; nsMedian: number; samples: number }[];
      };
      expect(report.settings.node).toBe(process.version);
      expect(new Set(report.results.map((r) => r.group))).toEqual(new Set(['route', 'headers']));
      expect(report.results.length).toBeGreaterThan(8);
      for (const r of report.results) {
        expect(r.samples, r.name).toBeGreaterThan(0);
        expect(r.nsMedian, r.name).toBeGreaterThan(0);
      }
    },
  );
});
