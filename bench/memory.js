#!/usr/bin/env node
// The memory target: RSS under 100 MB after a 1-million-request run, with no growth in its second
// half. One Gatehouse process per variant, loaded by 64 keep-alive clients as fast as it answers
// until the requests are sent; RSS and open sockets sampled every second from /proc. See README.md.
//
//   node bench/memory.js [plain] [full]        (default: both)
//   Env: BENCH_MEMORY_REQUESTS (1000000), BENCH_MEMORY_CONNECTIONS (64), BENCH_GATEHOUSE_DIR (..)
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { startFakeSink, sumOf } from './lib/fake-sinks.js';
import { startGatehouse } from './lib/gatehouse.js';
import { createApiKey, fullPipelineConfig, jwtFixture, scrape, startUpstream } from './lib/pipeline.js';
import { childrenOf, rssMb, socketCount } from './lib/proc-stats.js';
import { installCleanupHooks, makeTempDir, pinSelf } from './lib/proc.js';
import { startPrivateRedis } from './lib/redis-server.js';
import { flatness, floors } from './lib/soak-checks.js';
import { startLoad } from './lib/soak-load.js';
import { envNumber, fail, giveUpAfter } from './lib/settings.js';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const GATEHOUSE_DIR = path.resolve(process.env.BENCH_GATEHOUSE_DIR || path.join(BENCH_DIR, '..'));
const REQUESTS = envNumber('BENCH_MEMORY_REQUESTS', 1_000_000, { integer: true });
const CONNECTIONS = envNumber('BENCH_MEMORY_CONNECTIONS', 64, { integer: true });
const RSS_LIMIT_MB = 100;
const SAMPLE_MS = 1000;
const TOKENS = 64;
const VARIANTS = ['plain', 'full'];

/** @param {number} n */
const int = (n) => Math.round(n).toLocaleString('en-US');
/** @param {number} n @param {number} [d] */
const fix = (n, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : String(n));

/**
 * Runs one variant and returns its figures and checks.
 * @param {'plain' | 'full'} variant
 * @param {{ loadCpu: number | null, sutCpu: number | null }} cpus
 */
async function runVariant(variant, { loadCpu, sutCpu }) {
  const dir = makeTempDir(`gatehouse-bench-memory-${variant}-`);
  /** @type {Array<{ stop: () => Promise<void> }>} */
  const stoppers = [];
  const upstream = await startUpstream('a', loadCpu);
  stoppers.push(upstream.proc);
  /** @type {(i: number) => Record<string, string>} */
  let headers = () => ({});
  /** @type {((c: Record<string, unknown>) => Record<string, unknown>) | undefined} */
  let configure;
  if (variant === 'full') {
    const { pem, tokens } = jwtFixture(dir, TOKENS);
    const redis = await startPrivateRedis({ cpu: loadCpu });
    const es = await startFakeSink({ kind: 'elasticsearch', cpu: loadCpu });
    const otlp = await startFakeSink({ kind: 'otlp', cpu: loadCpu });
    stoppers.push(redis, es, otlp);
    const dbFile = path.join(dir, 'keys.db');
    createApiKey({ repoDir: GATEHOUSE_DIR, dir, dbFile });
    const tokenHeaders = tokens.map((t) => ({ authorization: `Bearer ${t}` }));
    headers = (i) => /** @type {Record<string, string>} */ (tokenHeaders[i % TOKENS]);
    configure = (base) =>
      fullPipelineConfig({
        base,
        pem,
        dbFile,
        redisUrl: redis.url,
        esUrl: es.url,
        otlpUrl: otlp.url,
        keyPrefix: `memory:${process.pid}:`,
        services: { app: { targets: [upstream.url], pool: { connections: CONNECTIONS } } },
      });
  }
  const gw = await startGatehouse({
    repoDir: GATEHOUSE_DIR,
    upstreamUrl: upstream.url,
    cpu: sutCpu,
    ...(configure ? { configure } : {}),
  });
  const pid = /** @type {number} */ (gw.proc.child.pid);
  const kids = childrenOf(pid);
  const watched = kids.length === 1 ? /** @type {number} */ (kids[0]) : pid;
  const idleRss = rssMb(watched) ?? Number.NaN;

  /** @type {{ t: number, rss: number, sockets: number }[]} */
  const samples = [];
  const load = startLoad({
    origin: gw.url.replace(/\/$/, ''),
    kinds: [
      {
        name: variant,
        weight: 1,
        method: 'GET',
        path: variant === 'full' ? (i) => `/api/data/items/${i % 1000}` : (i) => `/items/${i % 1000}`,
        headers,
      },
    ],
    connections: CONNECTIONS,
    maxRequests: REQUESTS,
  });
  const t = () => (performance.now() - load.started) / 1000;
  const sample = () => {
    const rss = rssMb(watched);
    const sockets = socketCount(watched);
    if (rss !== null && sockets !== null) samples.push({ t: t(), rss, sockets });
  };
  const sampler = setInterval(sample, SAMPLE_MS);
  /** the V8 heap, from the gateway's own /metrics every 10 s: what the RSS is made of */
  /** @type {{ t: number, heapTotal: number, heapUsed: number, newSpace: number, oldSpace: number, oldUsed: number, external: number }[]} */
  const heap = [];
  const readHeap = async () => {
    try {
      const m = await scrape(gw.adminUrl);
      const mb = (/** @type {string} */ name, /** @type {Record<string, string>} */ labels = {}) =>
        sumOf(m, name, labels) / 1048576;
      heap.push({
        t: t(),
        heapTotal: mb('nodejs_heap_size_total_bytes'),
        heapUsed: mb('nodejs_heap_size_used_bytes'),
        newSpace: mb('nodejs_heap_space_size_total_bytes', { space: 'new' }),
        oldSpace: mb('nodejs_heap_space_size_total_bytes', { space: 'old' }),
        oldUsed: mb('nodejs_heap_space_size_used_bytes', { space: 'old' }),
        external: mb('nodejs_external_memory_bytes'),
      });
    } catch {
      // a missed scrape is a missing point, not a failure
    }
  };
  const heapSampler = setInterval(readHeap, 10_000);
  const progress = setInterval(() => {
    const last = samples[samples.length - 1];
    console.log(
      `  [${fix(t(), 0)} s] ${int(load.counts.received)} responses${last ? `, rss ${fix(last.rss)} MB` : ''}`,
    );
  }, 20_000);
  await load.done;
  const seconds = t();
  clearInterval(progress);
  clearInterval(sampler);
  clearInterval(heapSampler);
  await readHeap();
  sample(); // the RSS "after the run": the last sample, taken once every response is in
  await load.stop();
  // a few idle seconds after the load: does the RSS go down, stay, or keep growing?
  await sleep(5000);
  const idleAfter = rssMb(watched) ?? Number.NaN;
  const alive = gw.running();
  await gw.stop();
  for (const s of stoppers) await s.stop();

  const c = load.counts;
  const halfMin = seconds / 2 / 60;
  // the soak's rule (README.md "Soak"): on the floors of each tenth of the run, at most 10 MB of
  // trend over the second half and no step up in the last quarter
  const rule = { maxSlopePerMin: Math.max(2, 10 / halfMin), tolerance: 0.1 };
  const rssPoints = samples.map((s) => ({ t: s.t, v: s.rss }));
  const rssRaw = flatness(rssPoints, rule);
  const rss = flatness(floors(rssPoints, seconds / 10), rule);
  const sockets = flatness(
    floors(
      samples.map((s) => ({ t: s.t, v: s.sockets })),
      seconds / 10,
    ),
    { maxSlopePerMin: Math.max(1, 4 / halfMin), tolerance: 0.1, slack: 4 },
  );
  const non200 = c.received - (c.status['200'] ?? 0);
  const checks = [
    {
      name: 'every request answered 200',
      ok: c.sent === c.received && non200 === 0 && c.errors === 0,
      detail: `sent ${int(c.sent)}, 200 × ${int(c.status['200'] ?? 0)}, other ${int(non200)}, errors ${c.errors}`,
    },
    {
      name: `RSS after the run < ${RSS_LIMIT_MB} MB`,
      ok: rssRaw.last < RSS_LIMIT_MB,
      detail: `${fix(rssRaw.last)} MB (max ${fix(rssRaw.max)})`,
    },
    {
      name: 'RSS flat in the second half',
      ok: rss.ok,
      detail: rss.ok
        ? `slope ${fix(rss.slopePerMin, 2)} MB/min ≤ ${fix(rule.maxSlopePerMin, 2)}, highest floor of the last quarter ${fix(rss.lastQuarterMax)} ≤ ${fix(rss.limit)}`
        : rss.reasons.join('; '),
    },
    {
      name: 'open sockets flat in the second half',
      ok: sockets.ok,
      detail: sockets.ok
        ? `floors: slope ${fix(sockets.slopePerMin, 2)}/min, last quarter ${sockets.lastQuarterMax} vs third ${sockets.thirdQuarterMax}`
        : sockets.reasons.join('; '),
    },
    { name: 'gateway alive', ok: alive, detail: alive ? 'yes' : 'exited' },
  ];
  return {
    variant,
    heap,
    requests: c.sent,
    seconds,
    rps: c.received / seconds,
    idleRss,
    idleAfter,
    rss,
    rssRaw,
    sockets,
    rule,
    checks,
    samples,
  };
}

async function main() {
  installCleanupHooks();
  const args = process.argv.slice(2);
  const unknown = args.filter((a) => !VARIANTS.includes(a));
  if (unknown.length) fail(`unknown variant(s) ${unknown.join(', ')}; known: ${VARIANTS.join(', ')}`);
  const variants = /** @type {Array<'plain' | 'full'>} */ (
    args.length ? VARIANTS.filter((v) => args.includes(v)) : VARIANTS
  );
  // bounded, yet room for a busy machine: 500 requests/s at least (a million in ~33 minutes)
  giveUpAfter(variants.length * (REQUESTS / 500 + 120));
  const [loadCpu, sutCpu] = os.availableParallelism() >= 2 ? [0, 1] : [null, null];
  if (loadCpu !== null) pinSelf(loadCpu);
  const startedAt = new Date();
  console.log(
    `memory: ${int(REQUESTS)} requests per variant, ${CONNECTIONS} keep-alive connections, unpaced; RSS every ${SAMPLE_MS / 1000} s`,
  );
  const results = [];
  for (const v of variants) {
    console.log(`${v}:`);
    results.push(await runVariant(v, { loadCpu, sutCpu }));
  }
  const lines = [
    '=== memory summary ===',
    `date ${startedAt.toISOString()}  node ${process.version}  ${os.cpus().length} CPUs; ${int(REQUESTS)} requests, ${CONNECTIONS} connections`,
    '',
    '| variant | requests | requests/s | RSS idle MB | RSS after run MB | RSS max MB | 2nd-half slope of floors MB/min | highest floor 4th / 3rd quarter MB | RSS 5 s later MB | sockets (median) |',
    '| ------- | -------: | ---------: | ----------: | ---------------: | ---------: | ------------------------------: | ---------------------------------: | ---------------: | ---------------: |',
    ...results.map(
      (r) =>
        `| ${r.variant} | ${int(r.requests)} | ${int(r.rps)} | ${fix(r.idleRss)} | ${fix(r.rssRaw.last)} | ${fix(r.rssRaw.max)} | ${fix(r.rss.slopePerMin, 2)} | ${fix(r.rss.lastQuarterMax)} / ${fix(r.rss.thirdQuarterMax)} | ${fix(r.idleAfter)} | ${r.sockets.median} |`,
    ),
    '',
    "V8 heap at the end of the load (MB; from the gateway's /metrics): what the RSS is made of",
    ...results.map((r) => {
      const h = r.heap[r.heap.length - 1];
      return h
        ? `  ${r.variant}: heap total ${fix(h.heapTotal)} (new space ${fix(h.newSpace)}, old space ${fix(h.oldSpace)} of which used ${fix(h.oldUsed)}), heap used ${fix(h.heapUsed)}, external ${fix(h.external)}; RSS beyond the heap ${fix(r.rssRaw.last - h.heapTotal)}`
        : `  ${r.variant}: no heap figures`;
    }),
    '',
    'checks',
    ...results.flatMap((r) =>
      r.checks.map((x) => `  ${x.ok ? 'PASS' : 'FAIL'}  ${r.variant}: ${x.name}: ${x.detail}`),
    ),
  ];
  const failed = results.flatMap((r) => r.checks).filter((x) => !x.ok);
  lines.push(failed.length === 0 ? 'MEMORY PASSED' : `MEMORY FAILED: ${failed.length} checks`);
  console.log(`\n${lines.join('\n')}`);
  const resultsDir = path.join(BENCH_DIR, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `memory-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ startedAt, REQUESTS, CONNECTIONS, results }, null, 1));
  console.log(`(samples: ${path.relative(process.cwd(), file)})`);
  process.exit(failed.length === 0 ? 0 : 1);
}

main().catch((err) => {
  console.error(`memory: ${err instanceof Error ? (err.stack ?? err.message) : err}`);
  process.exit(2);
});
