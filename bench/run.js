#!/usr/bin/env node
// Gatehouse benchmark: requests/s and latency of Gatehouse, nginx and http-proxy in front of one
// nginx upstream, measured with wrk. Method and settings: README.md.
//
//   node bench/run.js [direct] [nginx] [http-proxy] [undici-naive] [gatehouse]
//
// Env: BENCH_RUNS (3), BENCH_DURATION (10s), BENCH_WARMUP (3s, 0 = none), BENCH_CLOSE (1; 0 = skip the
// close mode), BENCH_CONNECTIONS (64), BENCH_THREADS (1).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startGatehouse } from './lib/gatehouse.js';
import { CLOSE, KEEP_ALIVE, SkipError, measure } from './lib/measure.js';
import { freePort, httpGet, waitForPort } from './lib/net.js';
import { startNginx, UPSTREAM_BODY } from './lib/nginx.js';
import { installCleanupHooks, pinSelf, sampleCpuBusy, spawnProcess, which } from './lib/proc.js';
import { checkRatios, formatRatioChecks, markdownTable, notes } from './lib/report.js';
import { envNumber, fail, giveUpAfter, readTiming, toolVersions } from './lib/settings.js';
import { parseDurationS } from './lib/wrk.js';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const REPO_DIR = path.resolve(BENCH_DIR, '..');
const ALL_SYSTEMS = ['direct', 'nginx', 'http-proxy', 'undici-naive', 'gatehouse'];
/** The ratios Gatehouse is held to (requests/s, same invocation). */
const TARGETS = [
  { system: 'gatehouse', versus: 'nginx', mode: 'ka', target: 0.45 },
  { system: 'gatehouse', versus: 'nginx', mode: 'close', target: 0.45 },
  { system: 'gatehouse', versus: 'http-proxy', mode: 'ka', target: 1.6 },
  { system: 'gatehouse', versus: 'undici-naive', mode: 'ka', target: 1.1 },
];

function readSettings() {
  const { runs, duration, warmup } = readTiming();
  return {
    runs,
    duration,
    warmup,
    close: process.env.BENCH_CLOSE !== '0',
    connections: envNumber('BENCH_CONNECTIONS', 64, { integer: true }),
    threads: envNumber('BENCH_THREADS', 1, { integer: true }),
  };
}

function parseSystems() {
  const args = process.argv.slice(2);
  if (args.includes('-h') || args.includes('--help')) {
    console.log(`usage: node run.js [${ALL_SYSTEMS.join('] [')}]   (default: all)
env: BENCH_RUNS=3 BENCH_DURATION=10s BENCH_WARMUP=3s BENCH_CLOSE=1 BENCH_CONNECTIONS=64 BENCH_THREADS=1`);
    process.exit(0);
  }
  const unknown = args.filter((a) => !ALL_SYSTEMS.includes(a));
  if (unknown.length) fail(`unknown system(s) ${unknown.join(', ')}; known: ${ALL_SYSTEMS.join(', ')}`);
  // Always in the canonical order, so that the reference rows come first.
  return args.length ? ALL_SYSTEMS.filter((s) => args.includes(s)) : ALL_SYSTEMS;
}

/** Installs nginx and wrk from Debian when missing; checks taskset. */
function ensureTools() {
  const missing = ['nginx', 'wrk'].filter((t) => !which(t));
  if (missing.length) {
    if (process.getuid?.() !== 0) {
      fail(`${missing.join(' and ')} missing: run  sudo apt-get install -y nginx wrk`);
    }
    console.log(`installing ${missing.join(' and ')} from Debian (apt-get)…`);
    const res = spawnSync('sh', ['-c', 'apt-get update && apt-get install -y nginx wrk'], {
      stdio: 'inherit',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
    if (res.status !== 0 || !which('nginx') || !which('wrk')) fail('apt-get could not install nginx and wrk');
  }
  if (!which('taskset')) fail('taskset is missing (Debian package util-linux)');
}

/**
 * How the systems are started. Each returns the options of measure() for it.
 * @param {string} name
 * @param {{ upstreamUrl: string, upstreamPort: number, sutCpu: number | null, close: boolean }} ctx
 * @returns {import('./lib/measure.js').MeasureOptions}
 */
function systemOptions(name, { upstreamUrl, upstreamPort, sutCpu, close }) {
  const withClose = close ? [KEEP_ALIVE, CLOSE] : [KEEP_ALIVE];
  switch (name) {
    case 'direct':
      return { name, url: upstreamUrl, modes: withClose };
    case 'nginx':
      return {
        name,
        modes: withClose,
        start: async () => {
          const proxy = await startNginx({ name: 'nginx-proxy', upstreamPort, keepalive: 64, cpu: sutCpu });
          return { url: proxy.url, stop: proxy.stop, running: proxy.proc.running };
        },
      };
    case 'http-proxy':
    case 'undici-naive':
      return {
        name,
        modes: [KEEP_ALIVE],
        start: () => startNodePeer(name, upstreamUrl, sutCpu),
      };
    case 'gatehouse':
      return {
        name,
        modes: withClose,
        start: async () => {
          try {
            return await startGatehouse({ repoDir: REPO_DIR, upstreamUrl, cpu: sutCpu });
          } catch (err) {
            if (err instanceof SkipError && !existsSync(path.join(REPO_DIR, 'dist'))) {
              err.message += `\n(${path.join(REPO_DIR, 'dist')} is missing: build first with  npm run build)`;
            }
            throw err;
          }
        },
      };
    default:
      throw new Error(`unknown system ${name}`);
  }
}

/**
 * A Node peer from peers/<name>.js (its dependencies in bench/node_modules).
 * @param {string} name
 * @param {string} upstreamUrl
 * @param {number | null} cpu
 */
async function startNodePeer(name, upstreamUrl, cpu) {
  const dep = name === 'http-proxy' ? 'http-proxy' : 'undici';
  if (!existsSync(path.join(BENCH_DIR, 'node_modules', dep))) {
    throw new SkipError(`${dep} is not installed: run  cd ${BENCH_DIR} && npm ci`);
  }
  const port = await freePort();
  const proc = spawnProcess({
    name,
    cmd: process.execPath,
    args: [path.join(BENCH_DIR, 'peers', `${name}.js`), '--port', String(port), '--target', upstreamUrl],
    cwd: BENCH_DIR,
    cpu,
  });
  try {
    await waitForPort(port, { isAlive: proc.running, what: name });
  } catch (err) {
    await proc.stop();
    throw new Error(`${err instanceof Error ? err.message : err}\n${proc.output()}`);
  }
  return { url: `http://127.0.0.1:${port}/`, stop: () => proc.stop(), running: proc.running };
}

async function main() {
  const systems = parseSystems();
  const settings = readSettings();
  ensureTools();
  installCleanupHooks();

  const cpus = os.availableParallelism();
  const [loadCpu, sutCpu] = cpus >= 2 ? [0, 1] : [null, null];
  if (cpus < 2) console.warn('warning: fewer than 2 CPUs: nothing is pinned, the figures mean little');
  else pinSelf(0); // the runner stays off the CPU of the system under test

  // Bounded total time: a hung step cannot keep the run going forever.
  const perRun = parseDurationS(settings.duration) + 2;
  const modesOf = (/** @type {string} */ s) =>
    settings.close && s !== 'http-proxy' && s !== 'undici-naive' ? 2 : 1;
  const budgetS =
    60 +
    systems.reduce(
      (sum, s) => sum + 35 + parseDurationS(settings.warmup ?? '0') + modesOf(s) * settings.runs * perRun,
      0,
    );
  giveUpAfter(budgetS);

  const versions = toolVersions();
  console.log(`Gatehouse benchmark: ${systems.join(', ')}`);
  console.log(
    `wrk -t${settings.threads} -c${settings.connections} -d${settings.duration} --latency, ` +
      `${settings.runs} run(s) per mode after a ${settings.warmup ?? 'no'} warm-up; medians. ` +
      `wrk + upstream on CPU ${loadCpu ?? '-'}, system under test on CPU ${sutCpu ?? '-'}.`,
  );
  console.log(versions.line);
  const busyBefore = await sampleCpuBusy(1000);
  if (busyBefore !== null && busyBefore > 0.1) {
    console.warn(
      `warning: the CPUs were ${Math.round(busyBefore * 100)} % busy before starting: ` +
        'other processes are running, the figures will be noisy',
    );
  }

  const upstream = await startNginx({ name: 'upstream', body: UPSTREAM_BODY, cpu: loadCpu });
  const probe = await httpGet(upstream.url);
  if (probe.status !== 200 || probe.body !== UPSTREAM_BODY) {
    throw new Error(`the upstream answered ${probe.status} with an unexpected body: ${probe.body}`);
  }
  console.log(`upstream: nginx at ${upstream.url} (${Buffer.byteLength(probe.body)}-byte JSON body)`);

  const ctx = { upstreamUrl: upstream.url, upstreamPort: upstream.port, sutCpu, close: settings.close };
  /** @type {import('./lib/measure.js').Measurement[]} */
  const results = [];
  const started = Date.now();
  for (const name of systems) {
    results.push(
      await measure({
        ...systemOptions(name, ctx),
        runs: settings.runs,
        duration: settings.duration,
        warmup: settings.warmup,
        connections: settings.connections,
        threads: settings.threads,
        wrkCpu: loadCpu,
      }),
    );
  }
  await upstream.stop();

  const table = markdownTable(results, { baseline: 'nginx' });
  const ratioChecks = checkRatios(results, TARGETS);
  const tableNotes = notes(results);
  console.log(`\n${table}\n`);
  for (const line of tableNotes) console.log(line);
  console.log(`${tableNotes.length ? '\n' : ''}Key ratios (requests/s, this run):`);
  for (const line of formatRatioChecks(ratioChecks)) console.log(`  ${line}`);

  const date = new Date();
  const resultsDir = path.join(BENCH_DIR, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `${date.toISOString().replace(/[:.]/g, '-')}.json`);
  const report = {
    date: date.toISOString(),
    elapsedS: Math.round((Date.now() - started) / 1000),
    systems,
    settings: { ...settings, loadCpu, sutCpu },
    host: {
      node: process.version,
      nginx: versions.nginx,
      wrk: versions.wrk,
      kernel: `${os.type()} ${os.release()}`,
      cpu: os.cpus()[0]?.model ?? '',
      cpus,
      cpuBusyBefore: busyBefore,
    },
    upstream: { url: upstream.url, bodyBytes: Buffer.byteLength(UPSTREAM_BODY) },
    table,
    notes: tableNotes,
    ratios: ratioChecks,
    results,
  };
  writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  console.log(`\nraw results: ${path.relative(process.cwd(), file) || file}`);
}

main().catch((err) => {
  console.error(`bench: ${err instanceof Error ? (err.stack ?? err.message) : err}`);
  process.exit(1);
});
