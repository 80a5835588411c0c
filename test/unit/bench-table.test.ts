// The pure pieces of the side-by-side benchmark (bench/run.js): CPU accounting from /proc, the
// table, the targets read from it, the generated docs section, h2load's summary and the reference
// proxies' configs. bench/ is plain JavaScript, loaded here without its types.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

interface RunFigures {
  rps: number;
  p50Ms: number;
  p99Ms: number;
  cpuUs: number;
  requests: number;
  errors: number;
}
interface Row {
  key: string;
  label: string;
  reference?: string;
  skipped?: string;
  runs: RunFigures[];
}
interface TargetCheck {
  label: string;
  cpuValue: number;
  rpsValue: number;
  target: number;
  met: boolean | null;
  detail: string;
}
interface CpuModule {
  parseProcStat(text: string): { pid: number; pgrp: number; utime: number; stime: number } | null;
  groupTicks(pgid: number, procDir?: string): Map<number, number>;
  ticksBetween(before: Map<number, number>, after: Map<number, number>): number;
  cpuPerRequestUs(ticks: number, requests: number, hz: number): number;
}
interface TableModule {
  summarize(runs: RunFigures[]): RunFigures;
  efficiency(ref: number, cpu: number): number;
  markdownTable(rows: Row[]): string;
  checkTargets(
    rows: Row[],
    keys: { plain: string; full: string; nginx: string; peers: string[] },
  ): TargetCheck[];
  checkAddedLatency(m: { rate: number; directP99Ms: number; gatehouseP99Ms: number }): TargetCheck;
  formatTargets(checks: TargetCheck[]): string[];
  replaceSection(doc: string, section: string, markers: { start: string; end: string }): string;
}
interface H2loadModule {
  parseH2load(out: string): {
    rps: number;
    requests: number;
    non2xx: number;
    failed: number;
    protocol?: string;
  };
  percentile(sorted: number[], q: number): number;
}

const load = <T>(rel: string): Promise<T> => import(new URL(rel, import.meta.url).href) as Promise<T>;
const cpu = await load<CpuModule>('../../bench/lib/cpu.js');
const table = await load<TableModule>('../../bench/lib/table.js');
const h2 = await load<H2loadModule>('../../bench/lib/h2load.js');
const { haproxyConfig } = await load<{ haproxyConfig(o: { port: number; upstreamPort: number }): string }>(
  '../../bench/lib/haproxy.js',
);
const { nginxConfig } = await load<{
  nginxConfig(o: { dir: string; port: number; upstreamPort?: number; workers?: number }): string;
}>('../../bench/lib/nginx.js');

const run = (rps: number, cpuUs: number, errors = 0): RunFigures => ({
  rps,
  p50Ms: 1,
  p99Ms: 2,
  cpuUs,
  requests: rps * 8,
  errors,
});

describe('CPU accounting from /proc/<pid>/stat', () => {
  // a command name with a space and a parenthesis: fields are counted from the last ')'
  const line = '4242 (node (worker) x) S 1 4240 4240 0 -1 4194560 100 0 0 0 1234 567 0 0 20 0 11 0 99 0 0';

  it('reads pid, process group, utime and stime', () => {
    expect(cpu.parseProcStat(line)).toEqual({ pid: 4242, pgrp: 4240, utime: 1234, stime: 567 });
    expect(cpu.parseProcStat('garbage')).toBeNull();
  });

  const dir = mkdtempSync(path.join(os.tmpdir(), 'bench-proc-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const write = (pid: number, pgrp: number, utime: number, stime: number) => {
    mkdirSync(path.join(dir, String(pid)), { recursive: true });
    writeFileSync(
      path.join(dir, String(pid), 'stat'),
      `${pid} (p) S 1 ${pgrp} ${pgrp} 0 -1 0 0 0 0 0 ${utime} ${stime} 0 0`,
    );
  };

  it('sums every process of the group, and only those', () => {
    write(10, 10, 100, 50);
    write(11, 10, 30, 20);
    write(12, 99, 1000, 1000); // another group
    mkdirSync(path.join(dir, 'self'), { recursive: true }); // not a pid
    const before = cpu.groupTicks(10, dir);
    expect([...before.entries()].sort()).toEqual([
      [10, 150],
      [11, 50],
    ]);
    write(10, 10, 300, 50);
    write(13, 10, 5, 5); // a worker started in between counts from zero
    const after = cpu.groupTicks(10, dir);
    expect(cpu.ticksBetween(before, after)).toBe(200 + 0 + 10);
  });

  it('turns ticks into microseconds per request', () => {
    // 250 ticks at 100 Hz = 2.5 s of CPU for 50 000 requests = 50 µs each
    expect(cpu.cpuPerRequestUs(250, 50_000, 100)).toBeCloseTo(50, 6);
    expect(cpu.cpuPerRequestUs(250, 0, 100)).toBeNaN();
  });
});

describe('the side-by-side table', () => {
  const rows: Row[] = [
    { key: 'direct', label: 'direct', runs: [run(50_000, 10), run(52_000, 11), run(48_000, 12)] },
    { key: 'nginx', label: 'nginx', runs: [run(40_000, 25), run(41_000, 24), run(39_000, 26)] },
    { key: 'http-proxy', label: 'http-proxy', runs: [run(11_000, 80)] },
    { key: 'undici-naive', label: 'undici-naive', runs: [run(17_000, 55)] },
    { key: 'gatehouse', label: 'gatehouse', runs: [run(20_000, 50, 3)] },
    { key: 'gatehouse-full', label: 'full', runs: [run(12_000, 70)] },
    { key: 'nginx-2w', label: 'nginx 2w', runs: [run(60_000, 30)] },
    { key: 'gatehouse-2w', label: 'gatehouse 2w', reference: 'nginx-2w', runs: [run(30_000, 60)] },
    { key: 'haproxy', label: 'haproxy', skipped: 'not installed', runs: [] },
  ];

  it('takes medians over the rounds and sums errors', () => {
    const s = table.summarize(rows[0]!.runs);
    expect(s.rps).toBe(50_000);
    expect(s.cpuUs).toBe(11);
    expect(table.summarize(rows[4]!.runs).errors).toBe(3);
  });

  it('prints CPU per request and the ratios on CPU first, requests/s second', () => {
    const text = table.markdownTable(rows);
    const line = (label: string) => text.split('\n').find((l) => l.startsWith(`| ${label} `)) ?? '';
    // gatehouse: 50 µs; direct 11 → 0.22, nginx 25 → 0.50; rps 20 000 / 50 000, / 40 000
    expect(line('gatehouse ⚠')).toBe(
      '| gatehouse ⚠ | 20 000 | 1.00 | 2.00 | 50.0 | 0.22 | 0.50 | 0.40 | 0.50 | 3 |',
    );
    // 2 workers compare with nginx's 2 workers
    expect(line('gatehouse 2w')).toContain('| 0.50 (nginx-2w) |');
    expect(line('haproxy')).toBe('| haproxy | skipped | | | | | | | | |');
  });

  it('checks the targets on CPU per request against nginx and the fastest Node peer', () => {
    const checks = table.checkTargets(rows, {
      plain: 'gatehouse',
      full: 'gatehouse-full',
      nginx: 'nginx',
      peers: ['http-proxy', 'undici-naive', 'fastify-http-proxy'],
    });
    expect(checks.map((c) => [c.cpuValue.toFixed(3), c.met])).toEqual([
      ['0.500', true], // 25 / 50 ≥ 0.45
      ['1.100', false], // 55 (undici-naive, the cheapest peer) / 50 < 1.6
      ['0.357', true], // 25 / 70 ≥ 0.33
      ['0.786', false], // 55 / 70 < 1.2
    ]);
    // requests/s beside: gatehouse 20 000 vs the fastest peer's 17 000
    expect(checks[1]!.rpsValue).toBeCloseTo(20_000 / 17_000, 6);
    const lines = table.formatTargets(checks);
    expect(lines[0]).toMatch(/^met: plain ≥ 45 % of nginx efficiency: 0\.50 on CPU per request/);
    expect(lines[1]).toMatch(/^MISSED: plain ≥ 1\.6 × fastest Node peer: 1\.10 .*undici-naive/);
  });

  it('reports a target as not measured when a row is missing', () => {
    const checks = table.checkTargets(rows.slice(0, 2), {
      plain: 'gatehouse',
      full: 'gatehouse-full',
      nginx: 'nginx',
      peers: ['http-proxy'],
    });
    expect(checks.every((c) => c.met === null)).toBe(true);
    expect(table.formatTargets(checks)[0]).toMatch(/^not measured/);
  });

  it('checks the added p99 latency', () => {
    const ok = table.checkAddedLatency({ rate: 8000, directP99Ms: 1.2, gatehouseP99Ms: 1.9 });
    expect(ok.met).toBe(true);
    expect(ok.cpuValue).toBeCloseTo(0.7, 6);
    expect(table.formatTargets([ok])[0]).toBe(
      'met: p99 added latency at half of max rps < 1 ms: +0.70 ms (1.90 ms − 1.20 ms (direct) at 8 000 req/s, open loop)',
    );
    expect(table.checkAddedLatency({ rate: 8000, directP99Ms: 1, gatehouseP99Ms: 2.5 }).met).toBe(false);
  });
});

describe('the generated section of docs/benchmarks.md', () => {
  const markers = { start: '<!-- s -->', end: '<!-- e -->' };
  it('replaces what is between the markers and leaves the rest', () => {
    const doc = '# B\n\nintro\n\n<!-- s -->\nold\n<!-- e -->\n\n## more\n';
    expect(table.replaceSection(doc, 'new\n', markers)).toBe(
      '# B\n\nintro\n\n<!-- s -->\nnew\n<!-- e -->\n\n## more\n',
    );
  });
  it('appends the section when the markers are absent', () => {
    expect(table.replaceSection('# B\n', 'new', markers)).toBe('# B\n\n<!-- s -->\nnew\n<!-- e -->\n');
  });
});

describe('h2load and the reference proxies', () => {
  it("parses h2load's summary", () => {
    const out = `finished in 8.00s, 4304.25 req/s, 1.2MB/s
requests: 34434 total, 34498 started, 34434 done, 34430 succeeded, 4 failed, 0 errored, 0 timeout
status codes: 34400 2xx, 0 3xx, 30 4xx, 0 5xx
Application protocol: h2`;
    expect(h2.parseH2load(out)).toMatchObject({
      rps: 4304.25,
      requests: 34434,
      failed: 4,
      non2xx: 30,
      protocol: 'h2',
    });
    expect(h2.percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.5)).toBe(5);
    expect(h2.percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.99)).toBe(10);
  });

  it('configures HAProxy with one thread and kept-alive server connections', () => {
    const conf = haproxyConfig({ port: 1000, upstreamPort: 2000 });
    expect(conf).toMatch(/nbthread 1\n/);
    expect(conf).toMatch(/http-reuse always/);
    expect(conf).toMatch(/bind 127\.0\.0\.1:1000/);
    expect(conf).toMatch(/server up 127\.0\.0\.1:2000/);
  });

  it('runs nginx as one process, or as a master and N workers', () => {
    expect(nginxConfig({ dir: '/d', port: 1, upstreamPort: 2 })).toMatch(
      /master_process off;\nworker_processes 1;/,
    );
    expect(nginxConfig({ dir: '/d', port: 1, upstreamPort: 2, workers: 2 })).toMatch(
      /master_process on;\nworker_processes 2;/,
    );
  });
});
