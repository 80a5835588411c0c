#!/usr/bin/env node
// Micro-benchmarks of the request path's hot pieces (cases.js), each through Gatehouse's own code
// in dist/ (npm run build first), timed with tinybench. No servers, no network, no Redis.
//
//   npm run bench:micro                      (= cd bench && npm ci --silent && node micro/run.js)
//   node bench/micro/run.js [word ...]       only the cases whose group or name holds a word
//                                            (groups: route jwt limit balancer headers observability)
//   node bench/micro/run.js --json           the results as JSON instead of the table
//   MICRO_TIME=200 MICRO_WARMUP=50 node bench/micro/run.js      shorter (ms per case)
//
// One tinybench sample is a batch of calls (enough for about 20 µs), so the timer's own cost is
// not measured with a call of a few nanoseconds; figures are per call. Beside wall time, the CPU
// time of the process over the measured phase divided by the calls made (all threads: GC
// included), which waiting for a core on a shared machine does not inflate.
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { Bench } from 'tinybench';
import { GROUPS, loadCases } from './cases.js';

const TIME_MS = Number(process.env.MICRO_TIME ?? 1000);
const WARMUP_MS = Number(process.env.MICRO_WARMUP ?? 200);
/** a sample lasts about this long */
const SAMPLE_NS = Number(process.env.MICRO_SAMPLE_NS ?? 20_000);
const args = process.argv.slice(2);
const json = args.includes('--json');
const words = args.filter((a) => !a.startsWith('--')).map((w) => w.toLowerCase());

/** what every case returned, summed: read at the end, so that no result is dead code */
let sink = 0;

/**
 * Calls per sample: after 20 ms of calls (so that a cold first call does not decide), doubled
 * from 1 until the fastest of 3 batches takes SAMPLE_NS (at most 2^16).
 * @param {import('./cases.js').Case} c
 */
async function batchSize(c) {
  const warm = performance.now() + Math.min(20, WARMUP_MS);
  let n = 1;
  while (performance.now() < warm) {
    sink += await c.run(n);
    if (n < 1024) n *= 2;
  }
  n = 1;
  for (;;) {
    // the fastest of 3: one batch caught by a GC or another process would stop the doubling early
    let ns = Infinity;
    for (let i = 0; i < 3; i++) {
      const start = process.hrtime.bigint();
      sink += await c.run(n);
      ns = Math.min(ns, Number(process.hrtime.bigint() - start));
    }
    if (ns >= SAMPLE_NS || n >= 65_536) return n;
    n *= 2;
  }
}

// only group names given: only those groups are built (no RSA key without `jwt`)
const { cases: all, close } = await loadCases(
  words.length > 0 && words.every((w) => GROUPS.includes(w)) ? words : GROUPS,
);
const cases = all.filter(
  (c) => words.length === 0 || words.some((w) => `${c.group} ${c.name}`.toLowerCase().includes(w)),
);
if (cases.length === 0) {
  console.error(
    `no case matches ${words.join(', ')}; groups: ${[...new Set(all.map((c) => c.group))].join(', ')}`,
  );
  process.exit(2);
}

const results = [];
const started = Date.now();
for (const c of cases) {
  const batch = await batchSize(c);
  let calls = 0;
  let cpuStart = process.cpuUsage();
  let cpu = { user: 0, system: 0 };
  const bench = new Bench({ time: TIME_MS, warmupTime: WARMUP_MS, warmupIterations: 2, iterations: 10 });
  const fn = c.async
    ? async () => {
        sink += await c.run(batch);
        calls += batch;
      }
    : () => {
        sink += c.run(batch);
        calls += batch;
      };
  bench.add(c.name, fn, {
    async: c.async === true,
    beforeAll(mode) {
      if (mode !== 'run') return;
      calls = 0;
      cpuStart = process.cpuUsage();
    },
    afterAll(mode) {
      if (mode === 'run') cpu = process.cpuUsage(cpuStart);
    },
  });
  await bench.run();
  const r = bench.tasks[0].result;
  if (r.state !== 'completed') throw new Error(`${c.name}: ${r.state} ${r.error?.stack ?? ''}`);
  const perCall = (ms) => (ms * 1e6) / batch; // ms per batch → ns per call
  results.push({
    group: c.group,
    name: c.name,
    naive: c.naive === true,
    batch,
    samples: r.latency.samplesCount,
    nsMedian: perCall(r.latency.p50),
    nsMad: perCall(r.latency.mad),
    nsMean: perCall(r.latency.mean),
    nsP99: perCall(r.latency.p99),
    rmePercent: r.latency.rme,
    opsPerSec: 1e9 / perCall(r.latency.p50),
    cpuNs: calls === 0 ? null : ((cpu.user + cpu.system) * 1000) / calls,
  });
  if (!json) process.stderr.write('.');
}
await close();
if (!json) process.stderr.write('\n');

const settings = {
  date: new Date(started).toISOString(),
  node: process.version,
  v8: process.versions.v8,
  cpu: os.cpus()[0]?.model ?? 'unknown',
  cpus: os.cpus().length,
  timeMs: TIME_MS,
  warmupMs: WARMUP_MS,
  sampleNs: SAMPLE_NS,
  seconds: Math.round((Date.now() - started) / 1000),
};

if (json) {
  console.log(JSON.stringify({ settings, results, checksum: sink }, null, 2));
} else {
  const fmt = (ns) =>
    ns >= 10_000 ? `${(ns / 1000).toFixed(1)} µs` : ns >= 100 ? ns.toFixed(0) : ns.toFixed(1);
  const ops = (n) =>
    n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)} k` : n.toFixed(0);
  console.log(
    `${settings.date} · Node ${settings.node} · ${settings.cpu} × ${settings.cpus} · ` +
      `${TIME_MS} ms per case after ${WARMUP_MS} ms warm-up · ${settings.seconds} s`,
  );
  console.log('');
  console.log('| group | case | ns/op (median) | ± MAD | p99 | ±rme (mean) | ops/s | CPU ns/op |');
  console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const r of results) {
    console.log(
      `| ${r.group} | ${r.naive ? '_' : ''}${r.name}${r.naive ? '_' : ''} | ${fmt(r.nsMedian)} | ${fmt(r.nsMad)} | ` +
        `${fmt(r.nsP99)} | ${r.rmePercent.toFixed(1)} % | ${ops(r.opsPerSec)} | ${r.cpuNs === null ? '-' : fmt(r.cpuNs)} |`,
    );
  }
  console.log('');
  console.log(`(checksum ${sink}: every result was used)`);
}
