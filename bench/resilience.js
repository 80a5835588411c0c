#!/usr/bin/env node
// Upstream resilience: what the balancer, circuit breaker and health tracking cost against plain
// proxying (wrk, same method as run.js), and how long clients see errors after a target dies
// (a fixed-rate load, one of three targets killed). See README.md.
//
//   node bench/resilience.js [overhead] [failover]      (default: both)
//
// Env: BENCH_RUNS (3), BENCH_DURATION (10s), BENCH_WARMUP (3s, 0 = none); BENCH_QUICK=1 for 1 run
// of 3 s after a 1 s warm-up; BENCH_RATE (200 req/s) and BENCH_FAILOVER_S (6, the kill at 2 s) for
// the failover runs; BENCH_GATEHOUSE_DIR: the checkout whose bin/ and dist/ are run (default: this one).
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fixedRateLoad, summariseFailover, watchTargetHealth } from './lib/failover.js';
import { startGatehouse } from './lib/gatehouse.js';
import { KEEP_ALIVE, formatErrors, formatInt, formatMs, measure } from './lib/measure.js';
import { freePort, httpGet } from './lib/net.js';
import { startNginx, UPSTREAM_BODY } from './lib/nginx.js';
import { installCleanupHooks, pinSelf, sampleCpuBusy, which } from './lib/proc.js';
import { ratio, rpsOf } from './lib/report.js';
import { envNumber, fail, giveUpAfter, readTiming, toolVersions } from './lib/settings.js';
import { parseDurationS } from './lib/wrk.js';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const GATEHOUSE_DIR = path.resolve(process.env.BENCH_GATEHOUSE_DIR || path.join(BENCH_DIR, '..'));
const PARTS = ['overhead', 'failover'];
const KILL_AT_MS = 2000;

/** @typedef {Record<string, unknown>} Config */

function readSettings() {
  const { quick, runs, duration, warmup } = readTiming();
  const failoverS = envNumber('BENCH_FAILOVER_S', 6);
  if (failoverS * 1000 <= KILL_AT_MS + 1000)
    fail('BENCH_FAILOVER_S must leave at least 1 s after the kill at 2 s');
  return {
    quick,
    runs,
    duration,
    warmup,
    rate: envNumber('BENCH_RATE', 200),
    failoverMs: failoverS * 1000,
  };
}

function parseParts() {
  const args = process.argv.slice(2);
  if (args.includes('-h') || args.includes('--help')) {
    console.log(`usage: node resilience.js [overhead] [failover]   (default: both)
env: BENCH_QUICK=1 BENCH_RUNS=3 BENCH_DURATION=10s BENCH_WARMUP=3s BENCH_RATE=200 BENCH_FAILOVER_S=6 BENCH_GATEHOUSE_DIR=..`);
    process.exit(0);
  }
  const unknown = args.filter((a) => !PARTS.includes(a));
  if (unknown.length) fail(`unknown part(s) ${unknown.join(', ')}; known: ${PARTS.join(', ')}`);
  return args.length ? PARTS.filter((p) => args.includes(p)) : PARTS;
}

/**
 * The benchmark config with its one service replaced: `targets`, a pool of 64 connections per
 * target (as in run.js), then `service`'s settings.
 * @param {string[]} targets
 * @param {Config} service
 * @returns {(config: Config) => Config}
 */
function withService(targets, service) {
  return (config) => ({
    ...config,
    services: { bench: { targets, pool: { connections: 64 }, ...service } },
  });
}

/** Resilience switched off: one target, no breaker, no ejection, no retries, no checks. */
const PLAIN = {
  circuitBreaker: { enabled: false },
  passiveHealth: { consecutiveErrors: 0 },
  retry: { attempts: 1 },
};

/** @param {string} url */
const origin = (url) => url.replace(/\/$/, '');

/**
 * A second `server` block for the upstream nginx: the same answer on another port, so that two
 * targets share one upstream process (and its CPU) exactly as the single target of `plain` does.
 * @param {number} port
 */
function secondServer(port) {
  return `  server {
    listen 127.0.0.1:${port};
    location / {
      default_type application/json;
      return 200 '${UPSTREAM_BODY}';
    }
  }
`;
}

/**
 * Part 1: the overhead, in one run: direct, plain, resilient with least-request and round-robin.
 * @param {ReturnType<typeof readSettings>} settings
 * @param {{ loadCpu: number | null, sutCpu: number | null }} cpus
 */
async function overhead(settings, { loadCpu, sutCpu }) {
  const secondPort = await freePort();
  const upstream = await startNginx({ name: 'upstream', cpu: loadCpu, extraHttp: secondServer(secondPort) });
  const targets = [origin(upstream.url), `http://127.0.0.1:${secondPort}`];
  for (const t of targets) {
    const probe = await httpGet(`${t}/`);
    if (probe.status !== 200 || probe.body !== UPSTREAM_BODY) {
      throw new Error(`the upstream ${t} answered ${probe.status} with an unexpected body: ${probe.body}`);
    }
  }
  console.log(`upstream: one nginx answering on ${targets.join(' and ')}`);

  const resilient = (/** @type {string} */ balancer) =>
    withService(targets, { balancer, healthCheck: { interval: '1s' } });
  const systems = [
    { name: 'direct', url: upstream.url },
    { name: 'plain', configure: withService([targets[0] ?? ''], PLAIN) },
    { name: 'resilient (least-request)', configure: resilient('least-request') },
    { name: 'resilient (round-robin)', configure: resilient('round-robin') },
  ];
  /** @type {import('./lib/measure.js').Measurement[]} */
  const results = [];
  try {
    for (const s of systems) {
      const configure = s.configure;
      results.push(
        await measure({
          name: s.name,
          modes: [KEEP_ALIVE],
          runs: settings.runs,
          duration: settings.duration,
          warmup: settings.warmup,
          wrkCpu: loadCpu,
          ...(configure
            ? {
                start: () =>
                  startGatehouse({
                    repoDir: GATEHOUSE_DIR,
                    upstreamUrl: upstream.url,
                    cpu: sutCpu,
                    configure,
                  }),
              }
            : { url: s.url }),
        }),
      );
    }
  } finally {
    await upstream.stop();
  }
  return results;
}

/**
 * @param {import('./lib/measure.js').Measurement[]} results
 * @returns {string}
 */
function overheadTable(results) {
  const plain = rpsOf(results, 'plain', 'ka');
  const plainP99 = results.find((r) => r.name === 'plain')?.modes.ka?.median.p99Ms;
  const lines = [
    '| system | rps | p50 ms | p99 ms | ÷ plain (rps) | p99 ÷ plain |',
    '|---|---:|---:|---:|---:|---:|',
  ];
  for (const r of results) {
    const ka = r.modes.ka;
    if (r.skipped || !ka) {
      lines.push(`| ${r.name} | skipped | | | | |`);
      continue;
    }
    lines.push(
      `| ${r.name}${ka.flagged ? ' ⚠' : ''} | ${formatInt(ka.median.rps)} | ${formatMs(ka.median.p50Ms)} | ` +
        `${formatMs(ka.median.p99Ms)} | ${formatRatio(ratio(ka.median.rps, plain))} | ` +
        `${formatRatio(ratio(ka.median.p99Ms, plainP99))} |`,
    );
  }
  return lines.join('\n');
}

/** @param {number} n */
function formatRatio(n) {
  return Number.isFinite(n) ? n.toFixed(2) : '—';
}

/**
 * The failover variants: what changes in the service of three targets. `expect` is what the
 * design predicts, printed under the table.
 */
const VARIANTS = [
  {
    name: 'nothing (control)',
    service: PLAIN,
    expect: 'errors until the end: a third of the requests after the kill',
  },
  {
    name: 'retries + passive (defaults)',
    service: {},
    expect: 'no client error: each refused attempt is retried on another target',
  },
  {
    name: 'passive only, no retries',
    service: { retry: { attempts: 1 } },
    expect: 'about passiveHealth.consecutiveErrors (5) errors, then ejection',
  },
  {
    name: 'active checks only, no retries',
    service: {
      retry: { attempts: 1 },
      passiveHealth: { consecutiveErrors: 0 },
      // the check's timeout may not exceed its interval (checks.ts)
      healthCheck: { interval: '500ms', timeout: '250ms', unhealthyAfter: 2 },
    },
    expect: 'errors for 0.5–1 s (2 failed checks 500 ms apart), a third of the requests meanwhile',
  },
];

/**
 * One failover run: three nginx targets, Gatehouse in front, the fixed-rate load, target 0
 * killed (SIGKILL) at 2 s, the admin API polled for when the gateway sees it.
 * @param {(typeof VARIANTS)[number]} variant
 * @param {ReturnType<typeof readSettings>} settings
 * @param {{ loadCpu: number | null, sutCpu: number | null }} cpus
 */
async function failoverRun(variant, settings, { loadCpu, sutCpu }) {
  console.log(`\n== failover: ${variant.name}`);
  const targets = [];
  /** @type {import('./lib/gatehouse.js').GatehouseHandle | null} */
  let gw = null;
  try {
    for (let i = 0; i < 3; i++) targets.push(await startNginx({ name: `target-${i}`, cpu: loadCpu }));
    const origins = targets.map((t) => origin(t.url));
    gw = await startGatehouse({
      repoDir: GATEHOUSE_DIR,
      upstreamUrl: targets[0]?.url ?? '',
      cpu: sutCpu,
      configure: withService(origins, variant.service),
    });
    // One request per target opens the pools, so that the first second is not a cold start.
    for (let i = 0; i < 3; i++) await httpGet(gw.url);
    const victim = targets[0];
    const watcher = watchTargetHealth({ adminUrl: gw.adminUrl, service: 'bench' });
    const load = await fixedRateLoad({
      url: gw.url,
      rate: settings.rate,
      durationMs: settings.failoverMs,
      actions: [{ atMs: KILL_AT_MS, run: () => victim?.proc.kill('SIGKILL') }],
    });
    const changes = await watcher.stop();
    const summary = summariseFailover({
      samples: load.samples,
      killMs: load.actionsMs[0] ?? KILL_AT_MS,
      durationMs: settings.failoverMs,
      changes,
      startedAt: load.startedAt,
      killedTarget: origins[0] ?? '',
    });
    console.log(
      `  ${summary.requests} requests, ${summary.errors} errors` +
        (summary.errors
          ? ` (${Object.entries(summary.failures)
              .map(([k, v]) => `${k}: ${v}`)
              .join(', ')})`
          : '') +
        `; last error ${formatDelay(summary.lastErrorMs)} after the kill` +
        `; seen unhealthy by the gateway ${formatDelay(summary.detectedMs)} after it`,
    );
    if (!gw.running()) console.log(`  ! gatehouse exited during the run:\n${gw.proc.output()}`);
    return { name: variant.name, expect: variant.expect, service: variant.service, summary };
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    console.log(`  skipped: ${message.replace(/\n/g, '\n    ')}`);
    return { name: variant.name, expect: variant.expect, service: variant.service, skipped: message };
  } finally {
    await gw?.stop();
    for (const t of targets) await t.stop();
  }
}

/** @param {number | null} ms */
function formatDelay(ms) {
  return ms === null ? '—' : `${Math.round(ms)} ms`;
}

/**
 * @param {Awaited<ReturnType<typeof failoverRun>>[]} runs
 * @returns {string}
 */
function failoverTable(runs) {
  const lines = [
    '| variant | requests | errors | % | kill → last error | kill → unhealthy | p99 ms after | max ms after |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of runs) {
    const s = r.summary;
    if (!s) {
      lines.push(`| ${r.name} | skipped | | | | | | |`);
      continue;
    }
    const last =
      s.lastErrorMs === null ? 'no error' : s.recovered ? formatDelay(s.lastErrorMs) : 'not recovered';
    lines.push(
      `| ${r.name}${s.errorsBeforeKill || s.notSent ? ' ⚠' : ''} | ${s.requests} | ${s.errors} | ` +
        `${s.errorPct.toFixed(1)} | ${last} | ${formatDelay(s.detectedMs)} | ` +
        `${formatMs(s.latencyAfterKillMs.p99)} | ${formatMs(s.latencyAfterKillMs.max)} |`,
    );
  }
  return lines.join('\n');
}

async function main() {
  const parts = parseParts();
  const settings = readSettings();
  for (const tool of ['nginx', 'wrk', 'taskset']) {
    if (!which(tool))
      fail(`${tool} is missing: run  node bench/run.js direct  once (it installs nginx and wrk)`);
  }
  installCleanupHooks();
  const cpuCount = os.availableParallelism();
  const cpus = cpuCount >= 2 ? { loadCpu: 0, sutCpu: 1 } : { loadCpu: null, sutCpu: null };
  if (cpuCount < 2) console.warn('warning: fewer than 2 CPUs: nothing is pinned, the figures mean little');
  else pinSelf(0); // the runner (and the failover load) stays off the gateway's CPU

  // Bounded: a hung step cannot keep the run going forever.
  const perSystem =
    35 + parseDurationS(settings.warmup ?? '0') + settings.runs * (parseDurationS(settings.duration) + 2);
  const budgetS =
    60 +
    (parts.includes('overhead') ? 4 * perSystem : 0) +
    (parts.includes('failover') ? VARIANTS.length * (settings.failoverMs / 1000 + 40) : 0);
  giveUpAfter(budgetS);

  const versions = toolVersions();
  console.log(
    `Gatehouse upstream-resilience benchmark: ${parts.join(', ')} (gatehouse from ${GATEHOUSE_DIR})`,
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

  /** @type {import('./lib/measure.js').Measurement[]} */
  let overheadResults = [];
  if (parts.includes('overhead')) {
    console.log(
      `\n# Overhead: wrk -t1 -c64 -d${settings.duration} --latency, ${settings.runs} run(s) after a ` +
        `${settings.warmup ?? 'no'} warm-up; medians. wrk + upstream on CPU ${cpus.loadCpu ?? '-'}, ` +
        `gatehouse on CPU ${cpus.sutCpu ?? '-'}.`,
    );
    overheadResults = await overhead(settings, cpus);
  }

  /** @type {Awaited<ReturnType<typeof failoverRun>>[]} */
  const failoverResults = [];
  if (parts.includes('failover')) {
    console.log(
      `\n# Failover: 3 nginx targets, ${settings.rate} GET/s for ${settings.failoverMs / 1000} s (open loop, ` +
        `keep-alive), target 0 killed (SIGKILL) at ${KILL_AT_MS / 1000} s.`,
    );
    for (const variant of VARIANTS) failoverResults.push(await failoverRun(variant, settings, cpus));
  }

  if (overheadResults.length) {
    console.log(
      `\nOverhead (requests/s and latency; ratios to plain, this run):\n\n${overheadTable(overheadResults)}\n`,
    );
    for (const r of overheadResults) {
      if (r.skipped) console.log(`${r.name}: skipped (${r.skipped.split('\n')[0]})`);
      const ka = r.modes.ka;
      if (ka?.errorCount) console.log(`⚠ ${r.name}: ${formatErrors(ka.errors)}`);
      if (ka?.error) console.log(`⚠ ${r.name}: ${ka.error.split('\n')[0]}`);
    }
  }
  if (failoverResults.length) {
    console.log(
      `\nFailover (errors seen by the clients; times from the kill):\n\n${failoverTable(failoverResults)}\n`,
    );
    for (const r of failoverResults) {
      console.log(`- ${r.name}: expected ${r.expect}`);
      if (r.summary?.errorsBeforeKill)
        console.log(`  ⚠ ${r.summary.errorsBeforeKill} errors before the kill`);
      if (r.summary?.notSent)
        console.log(`  ⚠ ${r.summary.notSent} requests not sent (client at its in-flight bound)`);
    }
  }

  const date = new Date();
  const resultsDir = path.join(BENCH_DIR, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `resilience-${date.toISOString().replace(/[:.]/g, '-')}.json`);
  const report = {
    date: date.toISOString(),
    elapsedS: Math.round((Date.now() - started) / 1000),
    parts,
    settings: { ...settings, killAtMs: KILL_AT_MS, ...cpus },
    host: {
      node: process.version,
      nginx: versions.nginx,
      wrk: versions.wrk,
      kernel: `${os.type()} ${os.release()}`,
      cpu: os.cpus()[0]?.model ?? '',
      cpus: cpuCount,
      cpuBusyBefore: busyBefore,
    },
    overhead: {
      table: overheadResults.length ? overheadTable(overheadResults) : null,
      results: overheadResults,
    },
    failover: {
      table: failoverResults.length ? failoverTable(failoverResults) : null,
      results: failoverResults,
    },
  };
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`\nraw results: ${path.relative(process.cwd(), file) || file}  (${report.elapsedS} s)`);
}

main().catch((err) => {
  console.error(`bench: ${err instanceof Error ? (err.stack ?? err.message) : err}`);
  process.exit(1);
});
