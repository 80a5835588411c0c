#!/usr/bin/env node
// Cost of observability: requests/s and latency through Gatehouse with access logs (Elasticsearch,
// stdout) and span export off and on, in one run, and the access-log accounting after each
// variant, so that a fast figure cannot hide lost records. See README.md.
//
//   node bench/observability.js [off] [es] [stdout] [all] [trace100]      (default: all five)
//
// Env: BENCH_RUNS (3), BENCH_DURATION (10s), BENCH_WARMUP (3s, 0 = none); BENCH_QUICK=1 for 1 run
// of 3 s after a 1 s warm-up; BENCH_GATEHOUSE_DIR: the checkout whose bin/ and dist/ are run.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parsePrometheus, startFakeSink, statsDelta, sumOf } from './lib/fake-sinks.js';
import { startGatehouse } from './lib/gatehouse.js';
import { KEEP_ALIVE, formatErrors, formatInt, formatMs, measure } from './lib/measure.js';
import { httpGet } from './lib/net.js';
import { startNginx, UPSTREAM_BODY } from './lib/nginx.js';
import { installCleanupHooks, pinSelf, sampleCpuBusy, which } from './lib/proc.js';
import { ratio } from './lib/report.js';
import { fail, giveUpAfter, readTiming, toolVersions } from './lib/settings.js';
import { ES_SETTINGS, withObservability } from './lib/stages.js';
import { parseDurationS } from './lib/wrk.js';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const GATEHOUSE_DIR = path.resolve(process.env.BENCH_GATEHOUSE_DIR || path.join(BENCH_DIR, '..'));
/** Longer than the span processor's 2 s batch delay: quiet for this long means every span is in. */
const SPANS_QUIET_MS = 2500;
/** Upper bound on waiting for the access logs and spans to be shipped after a variant's load. */
const SETTLE_MS = 12_000;

/** @typedef {Record<string, unknown>} Config */
/** @typedef {{ es: string, otlp: string }} SinkUrls */
/**
 * @typedef {object} Variant
 * @property {string} key  command-line name
 * @property {string} name  row label
 * @property {(urls: SinkUrls) => { access?: Config, tracing?: Config }} observability
 */

/** @type {Variant[]} */
const VARIANTS = [
  { key: 'off', name: 'off', observability: () => ({}) },
  {
    key: 'es',
    name: 'access log → Elasticsearch',
    observability: ({ es }) => ({ access: { elasticsearch: { url: es, ...ES_SETTINGS } } }),
  },
  { key: 'stdout', name: 'access log → stdout', observability: () => ({ access: { stdout: true } }) },
  {
    key: 'all',
    name: 'everything',
    observability: ({ es, otlp }) => ({
      access: { stdout: true, elasticsearch: { url: es, ...ES_SETTINGS } },
      tracing: { otlpUrl: otlp, sampleRate: 0.1 },
    }),
  },
  {
    key: 'trace100',
    name: 'tracing 100 %',
    observability: ({ otlp }) => ({ tracing: { otlpUrl: otlp, sampleRate: 1 } }),
  },
];

function parseVariants() {
  const args = process.argv.slice(2);
  const keys = VARIANTS.map((v) => v.key);
  if (args.includes('-h') || args.includes('--help')) {
    console.log(`usage: node observability.js [${keys.join('] [')}]   (default: all)
env: BENCH_QUICK=1 BENCH_RUNS=3 BENCH_DURATION=10s BENCH_WARMUP=3s BENCH_GATEHOUSE_DIR=..`);
    process.exit(0);
  }
  const unknown = args.filter((a) => !keys.includes(a));
  if (unknown.length) fail(`unknown variant(s) ${unknown.join(', ')}; known: ${keys.join(', ')}`);
  // Always in this order, so that the reference comes first.
  return args.length ? VARIANTS.filter((v) => args.includes(v.key)) : VARIANTS;
}

/** @param {string} adminUrl */
async function scrape(adminUrl) {
  const res = await httpGet(`${adminUrl}/metrics`, { timeoutMs: 5000 });
  if (res.status !== 200) throw new Error(`GET ${adminUrl}/metrics answered ${res.status}`);
  return parsePrometheus(res.body);
}

/**
 * @typedef {object} SinkAccount
 * @property {string} sink
 * @property {number} enqueued
 * @property {number} shipped
 * @property {number} dropped
 * @property {Record<string, number>} droppedBy  reason -> records
 * @property {number} buffered
 * @property {number | null} received  documents the fake collector got; null for stdout (/dev/null)
 */

/**
 * @typedef {object} Account
 * @property {number} requests  gatehouse_requests_total: every request served, check and warm-up included
 * @property {SinkAccount[]} sinks
 * @property {{ sampleRate: number, received: number, exports: number, bad: number } | null} spans
 * @property {number} settleMs  how long the access logs and spans took to be shipped after the load
 */

/**
 * Waits until nothing is buffered and the spans have stopped arriving, then reads the gateway's
 * access-log metrics and what the fake collectors received since `before`.
 * @param {object} opts
 * @param {string} opts.adminUrl
 * @param {{ access?: Config, tracing?: Config }} opts.obs
 * @param {import('./lib/fake-sinks.js').FakeSink} opts.es
 * @param {import('./lib/fake-sinks.js').FakeSink} opts.otlp
 * @param {{ es: import('./lib/fake-sinks.js').SinkStats, otlp: import('./lib/fake-sinks.js').SinkStats }} opts.before
 * @returns {Promise<Account>}
 */
async function account({ adminUrl, obs, es, otlp, before }) {
  const sampleRate = obs.tracing ? Number(obs.tracing.sampleRate) : null;
  const started = Date.now();
  let samples = await scrape(adminUrl);
  let spansSeen = -1;
  let quietSince = Date.now();
  while (Date.now() - started < SETTLE_MS) {
    const buffered = sumOf(samples, 'gatehouse_access_log_buffered');
    let spansDone = true;
    if (sampleRate !== null) {
      const spans = statsDelta(before.otlp, await otlp.stats()).items;
      if (spans !== spansSeen) [spansSeen, quietSince] = [spans, Date.now()];
      const all = sampleRate === 1 && spans >= sumOf(samples, 'gatehouse_requests_total');
      spansDone = all || Date.now() - quietSince >= SPANS_QUIET_MS;
    }
    if (buffered === 0 && spansDone) break;
    await sleep(250);
    samples = await scrape(adminUrl);
  }
  const settleMs = Date.now() - started;
  const esGot = statsDelta(before.es, await es.stats());
  const otlpGot = statsDelta(before.otlp, await otlp.stats());

  /** @type {SinkAccount[]} */
  const sinks = [];
  for (const sink of ['elasticsearch', 'stdout']) {
    const enqueued = sumOf(samples, 'gatehouse_access_log_enqueued_total', { sink });
    const configured =
      sink === 'stdout' ? obs.access?.stdout === true : obs.access?.elasticsearch !== undefined;
    if (!configured && enqueued === 0) continue;
    /** @type {Record<string, number>} */
    const droppedBy = {};
    for (const s of samples) {
      if (s.name === 'gatehouse_access_log_dropped_total' && s.labels.sink === sink && s.value > 0) {
        droppedBy[s.labels.reason ?? '?'] = s.value;
      }
    }
    sinks.push({
      sink,
      enqueued,
      shipped: sumOf(samples, 'gatehouse_access_log_shipped_total', { sink }),
      dropped: sumOf(samples, 'gatehouse_access_log_dropped_total', { sink }),
      droppedBy,
      buffered: sumOf(samples, 'gatehouse_access_log_buffered', { sink }),
      received: sink === 'elasticsearch' ? esGot.items : null,
    });
  }
  return {
    requests: sumOf(samples, 'gatehouse_requests_total'),
    sinks,
    spans:
      sampleRate === null
        ? null
        : { sampleRate, received: otlpGot.items, exports: otlpGot.requests, bad: otlpGot.bad },
    settleMs,
  };
}

/** Why records are dropped (docs/access-logs.md). */
const DROP_REASONS = {
  buffer_full: 'the buffer (maxBuffer) was full: the sink did not keep up with the request rate',
  rejected: 'the collector refused the documents, or a record could not be serialised',
  retries_exhausted: 'the collector kept refusing them (5 retries)',
  shutdown: 'still buffered when the gateway stopped',
  closed: 'pushed after the access log was closed',
};

/**
 * What the reader should conclude from one sink's numbers.
 * @param {Account} a
 * @param {SinkAccount} s
 * @returns {string}
 */
function verdict(a, s) {
  const problems = [];
  if (s.enqueued !== a.requests)
    problems.push(`${formatInt(a.requests - s.enqueued)} requests never enqueued`);
  for (const [reason, n] of Object.entries(s.droppedBy)) {
    problems.push(
      `${formatInt(n)} dropped (${reason}: ${DROP_REASONS[/** @type {keyof typeof DROP_REASONS} */ (reason)] ?? 'see docs/access-logs.md'})`,
    );
  }
  if (s.buffered > 0)
    problems.push(`${formatInt(s.buffered)} still buffered after ${Math.round(a.settleMs / 1000)} s`);
  if (s.received !== null && s.received < s.shipped) {
    problems.push(`the collector received ${formatInt(s.shipped - s.received)} fewer than shipped`);
  }
  const notes = [];
  if (s.received !== null && s.received > s.shipped) {
    notes.push(`${formatInt(s.received - s.shipped)} sent twice (at-least-once delivery)`);
  }
  const head = problems.length ? `⚠ ${problems.join('; ')}` : 'nothing lost';
  return notes.length ? `${head}; ${notes.join('; ')}` : head;
}

/**
 * @param {{ variant: Variant, result: import('./lib/measure.js').Measurement }[]} rows
 */
function speedTable(rows) {
  const base = rows.find((r) => r.variant.key === 'off')?.result.modes.ka?.median;
  const lines = [
    '| variant | rps | p50 ms | p99 ms | rps ÷ off | p99 ÷ off |',
    '|---|---:|---:|---:|---:|---:|',
  ];
  for (const { variant, result } of rows) {
    const m = result.modes.ka;
    if (result.skipped || !m) {
      lines.push(`| ${variant.name} | skipped | | | | |`);
      continue;
    }
    const r = (/** @type {number} */ n) => (Number.isFinite(n) ? n.toFixed(2) : '—');
    lines.push(
      `| ${variant.name}${m.flagged ? ' ⚠' : ''} | ${formatInt(m.median.rps)} | ${formatMs(m.median.p50Ms)} | ` +
        `${formatMs(m.median.p99Ms)} | ${r(ratio(m.median.rps, base?.rps))} | ${r(ratio(m.median.p99Ms, base?.p99Ms))} |`,
    );
  }
  return lines.join('\n');
}

/**
 * @param {{ variant: Variant, account: Account | undefined }[]} rows
 */
function accountingTable(rows) {
  const lines = [
    '| variant | requests | sink | enqueued | shipped | dropped | buffered | collector got | verdict |',
    '|---|---:|---|---:|---:|---:|---:|---:|---|',
  ];
  for (const { variant, account: a } of rows) {
    if (!a) continue;
    if (a.sinks.length === 0) {
      lines.push(`| ${variant.name} | ${formatInt(a.requests)} | (no access log) | | | | | | |`);
    }
    for (const s of a.sinks) {
      lines.push(
        `| ${variant.name} | ${formatInt(a.requests)} | ${s.sink} | ${formatInt(s.enqueued)} | ${formatInt(s.shipped)} | ` +
          `${formatInt(s.dropped)} | ${formatInt(s.buffered)} | ${s.received === null ? '/dev/null' : formatInt(s.received)} | ` +
          `${verdict(a, s)} |`,
      );
    }
  }
  return lines.join('\n');
}

/**
 * One line per variant with span export: spans received against what the sample rate predicts.
 * New traces only (wrk sends no traceparent), so the expectation is sampleRate × requests.
 * @param {{ variant: Variant, account: Account | undefined }[]} rows
 */
function spanLines(rows) {
  const out = [];
  for (const { variant, account: a } of rows) {
    if (!a?.spans) continue;
    const { sampleRate, received, exports, bad } = a.spans;
    const expected = sampleRate * a.requests;
    const share = a.requests ? received / a.requests : Number.NaN;
    let note = '';
    if (sampleRate === 1 && received < a.requests) {
      note = ` ⚠ ${formatInt(a.requests - received)} spans missing: dropped when the span queue (2048) was full, or a failed export`;
    } else if (sampleRate < 1) {
      // a binomial draw: more than 5 standard deviations off means spans were lost, not unlucky
      const sd = Math.sqrt(a.requests * sampleRate * (1 - sampleRate));
      if (received < expected - 5 * sd)
        note = ' ⚠ far fewer than sampled: spans dropped (span queue full) or exports failed';
    }
    if (bad) note += ` ⚠ ${bad} exports were not OTLP/JSON (spans not counted)`;
    out.push(
      `- ${variant.name}: sampleRate ${sampleRate}, ${formatInt(a.requests)} requests → ${formatInt(received)} spans ` +
        `received in ${formatInt(exports)} exports (${(share * 100).toFixed(1)} %; expected ≈ ${formatInt(expected)})${note}`,
    );
  }
  return out;
}

async function main() {
  const variants = parseVariants();
  const settings = readTiming();
  for (const tool of ['nginx', 'wrk', 'taskset']) {
    if (!which(tool))
      fail(`${tool} is missing: run  node bench/run.js direct  once (it installs nginx and wrk)`);
  }
  installCleanupHooks();
  const cpuCount = os.availableParallelism();
  const [loadCpu, sutCpu] = cpuCount >= 2 ? [0, 1] : [null, null];
  if (cpuCount < 2) console.warn('warning: fewer than 2 CPUs: nothing is pinned, the figures mean little');
  else pinSelf(0); // the runner stays off the gateway's CPU

  // Bounded: a hung step cannot keep the run going forever.
  const perVariant =
    35 +
    SETTLE_MS / 1000 +
    parseDurationS(settings.warmup ?? '0') +
    settings.runs * (parseDurationS(settings.duration) + 2);
  const budgetS = 60 + variants.length * perVariant;
  giveUpAfter(budgetS);

  const versions = toolVersions();
  console.log(
    `Gatehouse observability benchmark: ${variants.map((v) => v.key).join(', ')} (gatehouse from ${GATEHOUSE_DIR})`,
  );
  console.log(
    `wrk -t1 -c64 -d${settings.duration} --latency, ${settings.runs} run(s) after a ${settings.warmup ?? 'no'} ` +
      `warm-up; medians. wrk, upstream nginx and the fake collectors on CPU ${loadCpu ?? '-'}, gatehouse alone ` +
      `on CPU ${sutCpu ?? '-'}, its stdout to /dev/null.`,
  );
  console.log(
    'Prometheus metrics are always on (there is no switch): every variant, "off" included, counts them.',
  );
  console.log(versions.line);
  const busyBefore = await sampleCpuBusy(1000);
  if (busyBefore !== null && busyBefore > 0.1) {
    console.warn(
      `warning: the CPUs were ${Math.round(busyBefore * 100)} % busy before starting: ` +
        'other processes are running, the figures will be noisy',
    );
  }
  const started = Date.now();

  const upstream = await startNginx({ name: 'upstream', body: UPSTREAM_BODY, cpu: loadCpu });
  const es = await startFakeSink({ kind: 'elasticsearch', cpu: loadCpu });
  const otlp = await startFakeSink({ kind: 'otlp', cpu: loadCpu });
  const urls = { es: es.url, otlp: otlp.url };

  /** @type {{ variant: Variant, obs: { access?: Config, tracing?: Config }, result: import('./lib/measure.js').Measurement, account: Account | undefined, accountError?: string }[]} */
  const rows = [];
  for (const variant of variants) {
    const obs = variant.observability(urls);
    /** @type {Account | undefined} */
    let accountResult;
    /** @type {string | undefined} */
    let accountError;
    const result = await measure({
      name: variant.name,
      modes: [KEEP_ALIVE],
      runs: settings.runs,
      duration: settings.duration,
      warmup: settings.warmup,
      wrkCpu: loadCpu,
      start: async () => {
        console.log(
          `  config: ${JSON.stringify({ logging: { access: obs.access ?? {} }, tracing: obs.tracing ?? '(none)' })}`,
        );
        const before = { es: await es.stats(), otlp: await otlp.stats() };
        // stdout to /dev/null in every variant: an access log costs what writing it costs, not
        // what a pipe into this runner (on the load CPU) would
        const gw = await startGatehouse({
          repoDir: GATEHOUSE_DIR,
          upstreamUrl: upstream.url,
          cpu: sutCpu,
          configure: (c) => withObservability(c, obs),
          stdout: 'ignore',
        });
        return {
          url: gw.url,
          running: gw.proc.running,
          // measure() calls this after the last run: account while the gateway still runs
          stop: async () => {
            try {
              accountResult = await account({ adminUrl: gw.adminUrl, obs, es, otlp, before });
            } catch (err) {
              accountError = err instanceof Error ? err.message : String(err);
              console.log(`  ! accounting failed: ${accountError}`);
            } finally {
              await gw.proc.stop();
            }
          },
        };
      },
    });
    rows.push({ variant, obs, result, account: accountResult, ...(accountError ? { accountError } : {}) });
  }
  await Promise.all([upstream.stop(), es.stop(), otlp.stop()]);

  const speed = speedTable(rows);
  const accounting = accountingTable(rows);
  const spans = spanLines(rows);
  console.log(`\nRequests/s and latency (ratios to "off", this run):\n\n${speed}\n`);
  for (const { variant, result } of rows) {
    if (result.skipped) console.log(`${variant.name}: skipped (${result.skipped.split('\n')[0]})`);
    const ka = result.modes.ka;
    if (ka?.errorCount) console.log(`⚠ ${variant.name}: ${formatErrors(ka.errors)}`);
    if (ka?.error) console.log(`⚠ ${variant.name}: ${ka.error.split('\n')[0]}`);
  }
  console.log(
    `Access-log accounting after each variant (admin /metrics; requests = gatehouse_requests_total, ` +
      `check and warm-up included; enqueued = shipped + dropped + buffered):\n\n${accounting}\n`,
  );
  for (const { variant, accountError } of rows) {
    if (accountError) console.log(`⚠ ${variant.name}: no accounting (${accountError})`);
  }
  if (spans.length) console.log(`Spans (fake OTLP receiver):\n${spans.join('\n')}`);

  const date = new Date();
  const resultsDir = path.join(BENCH_DIR, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `observability-${date.toISOString().replace(/[:.]/g, '-')}.json`);
  const report = {
    date: date.toISOString(),
    elapsedS: Math.round((Date.now() - started) / 1000),
    settings: { ...settings, loadCpu, sutCpu, connections: 64, threads: 1 },
    host: {
      node: process.version,
      nginx: versions.nginx,
      wrk: versions.wrk,
      kernel: `${os.type()} ${os.release()}`,
      cpu: os.cpus()[0]?.model ?? '',
      cpus: cpuCount,
      cpuBusyBefore: busyBefore,
    },
    tables: { speed, accounting, spans },
    variants: rows.map(({ variant, obs, result, account: a, accountError }) => ({
      key: variant.key,
      name: variant.name,
      config: obs,
      accounting: a ?? null,
      ...(accountError ? { accountError } : {}),
      result,
    })),
  };
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`\nraw results: ${path.relative(process.cwd(), file) || file}  (${report.elapsedS} s)`);
}

main().catch((err) => {
  console.error(`bench: ${err instanceof Error ? (err.stack ?? err.message) : err}`);
  process.exit(1);
});
