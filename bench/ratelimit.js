#!/usr/bin/env node
// Cost of rate limiting: requests/s through Gatehouse with no limit, with an in-memory limit and
// with a Redis limit, in one run; and Redis commands per request (INFO commandstats).
//
//   node bench/ratelimit.js            (REDIS_URL, default redis://127.0.0.1:6379)
//
// The limit is set far above what the run can reach, so every request is counted and none is
// refused: what is measured is the cost of deciding. Env: BENCH_RUNS (3), BENCH_DURATION (10s),
// BENCH_WARMUP (3s).
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startGatehouse } from './lib/gatehouse.js';
import { KEEP_ALIVE, measure } from './lib/measure.js';
import { startNginx, UPSTREAM_BODY } from './lib/nginx.js';
import { installCleanupHooks, pinSelf, runSync } from './lib/proc.js';
import { markdownTable } from './lib/report.js';
import { withRateLimit } from './lib/stages.js';
import { runWrk } from './lib/wrk.js';

const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const runs = Number(process.env.BENCH_RUNS ?? 3);
const duration = process.env.BENCH_DURATION ?? '10s';
const warmup = process.env.BENCH_WARMUP ?? '3s';

/** @param {Record<string, unknown>} config @param {string} store */
function limited(config, store) {
  return withRateLimit(config, {
    redisUrl: store === 'redis' ? REDIS_URL : null,
    keyPrefix: `bench:${process.pid}:`,
  });
}

/** Calls per command from `INFO commandstats`. */
function commandStats() {
  const out = runSync('redis-cli', ['-u', REDIS_URL, 'info', 'commandstats']).output;
  /** @type {Record<string, number>} */
  const calls = {};
  for (const m of out.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls[m[1] ?? ''] = Number(m[2]);
  return calls;
}

/** @param {Record<string, number>} a @param {Record<string, number>} b */
function delta(a, b) {
  /** @type {Record<string, number>} */
  const d = {};
  for (const [k, v] of Object.entries(b)) if (v - (a[k] ?? 0) > 0) d[k] = v - (a[k] ?? 0);
  return d;
}

async function main() {
  installCleanupHooks();
  const [loadCpu, sutCpu] = os.availableParallelism() >= 2 ? [0, 1] : [null, null];
  if (loadCpu !== null) pinSelf(loadCpu);
  const upstream = await startNginx({ name: 'upstream', body: UPSTREAM_BODY, cpu: loadCpu });
  const variants = [
    ['gatehouse', (/** @type {Record<string, unknown>} */ c) => c],
    ['gatehouse+limit(memory)', (/** @type {Record<string, unknown>} */ c) => limited(c, 'memory')],
    ['gatehouse+limit(redis)', (/** @type {Record<string, unknown>} */ c) => limited(c, 'redis')],
  ];
  const results = [];
  for (const [
    name,
    configure,
  ] of /** @type {Array<[string, (c: Record<string, unknown>) => Record<string, unknown>]>} */ (variants)) {
    results.push(
      await measure({
        name,
        modes: [KEEP_ALIVE],
        runs,
        duration,
        warmup,
        wrkCpu: loadCpu,
        start: () => startGatehouse({ repoDir: REPO_DIR, upstreamUrl: upstream.url, cpu: sutCpu, configure }),
      }),
    );
  }

  // Redis commands per request, over one fixed run
  const gw = await startGatehouse({
    repoDir: REPO_DIR,
    upstreamUrl: upstream.url,
    cpu: sutCpu,
    configure: (c) => limited(c, 'redis'),
  });
  const before = commandStats();
  const run = await runWrk({
    url: gw.url,
    duration: '3s',
    threads: 1,
    connections: 64,
    cpu: loadCpu,
    headers: {},
  });
  const after = commandStats();
  await gw.stop();
  await upstream.stop();
  const d = delta(before, after);
  delete d.info;
  const scriptCalls = (d.evalsha ?? 0) + (d.eval ?? 0);
  const allCalls = Object.values(d).reduce((a, b) => a + b, 0);

  console.log(`\n${markdownTable(results, { baseline: 'gatehouse' })}\n`);
  console.log(`Redis, over ${run.requests} requests (3 s, 64 connections):`);
  console.log(`  round trips (EVALSHA/EVAL) per request: ${(scriptCalls / run.requests).toFixed(3)}`);
  console.log(
    `  commands per request, counting those the script runs inside Redis: ${(allCalls / run.requests).toFixed(2)} ` +
      `(${Object.entries(d)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')})`,
  );
  if (run.errorCount) console.log(`  errors during that run: ${JSON.stringify(run.errors)}`);
}

main().catch((err) => {
  console.error(`bench: ${err instanceof Error ? (err.stack ?? err.message) : err}`);
  process.exit(1);
});
