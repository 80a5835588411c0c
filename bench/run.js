#!/usr/bin/env node
// Gatehouse benchmark, side by side: direct calls, nginx, HAProxy, the Node peers and Gatehouse
// (plain, each stage alone, the full pipeline, TLS, HTTP/2, 2 workers, another Node) in front of one
// nginx upstream, in interleaved rounds, with the CPU time per request of each system under test.
// Method, settings and rows: README.md.
//
//   node bench/run.js [ROW...]        (default: every row; `--list` names them)
//
// Env: BENCH_ROUNDS (3), BENCH_DURATION (8s), BENCH_WARMUP (2s, 0 = none), BENCH_QUICK=1 (1 round of
// 3 s after a 1 s warm-up), BENCH_CONNECTIONS (64), BENCH_LATENCY_DURATION (10s; 0 = no fixed-rate
// part), BENCH_ALT_NODE (24.22.3), BENCH_DOCS (write docs/benchmarks.md: default on for a full run).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { clockTicks, cpuPerRequestUs, groupTicks, ticksBetween } from './lib/cpu.js';
import { startFakeSink } from './lib/fake-sinks.js';
import { startGatehouse } from './lib/gatehouse.js';
import { runH2load, selfSignedCertificate } from './lib/h2load.js';
import { haproxyVersion, startHaproxy } from './lib/haproxy.js';
import { formatInt, formatMs, median } from './lib/measure.js';
import { freePort, httpGet, waitForPort } from './lib/net.js';
import { startNginx, UPSTREAM_BODY } from './lib/nginx.js';
import {
  installCleanupHooks,
  makeTempDir,
  pinSelf,
  runSync,
  sampleCpuBusy,
  spawnProcess,
  which,
} from './lib/proc.js';
import { redisVersion, startRedis } from './lib/redis.js';
import { envNumber, fail, giveUpAfter } from './lib/settings.js';
import {
  createApiKey,
  jwtFixture,
  withAccessLog,
  withApiKey,
  withJwt,
  withRateLimit,
  withRbac,
  withTracing,
} from './lib/stages.js';
import {
  checkAddedLatency,
  checkTargets,
  formatTargets,
  markdownTable,
  replaceSection,
  summaries,
} from './lib/table.js';
import { parseDurationS, runWrk } from './lib/wrk.js';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const REPO_DIR = path.resolve(BENCH_DIR, '..');
const DOCS_FILE = path.join(REPO_DIR, 'docs', 'benchmarks.md');
const MARKERS = { start: '<!-- bench:run:start -->', end: '<!-- bench:run:end -->' };
const LOAD_CPU = 0;
const SUT_CPU = 1;
const BOTH_CPUS = '0,1';
const PEERS = ['fast-gateway', 'fastify-http-proxy', 'http-proxy', 'undici-naive'];

/** @typedef {Record<string, unknown>} Config */

/**
 * What every system's start() gets: the upstream, the private Redis, the fake collectors and the
 * credentials (each made only when a selected row needs it).
 * @typedef {object} Env
 * @property {{ url: string, port: number, pgid: number }} upstream
 * @property {string} redisUrl
 * @property {string} esUrl
 * @property {string} otlpUrl
 * @property {{ pem: string, token: string, roleless: string }} jwt  roleless: a valid token without the role
 * @property {{ key: string, database: Config }} apiKey
 * @property {{ cert: string, key: string }} tls
 * @property {string} altNode  the other Node's binary
 */

/**
 * @typedef {object} Started
 * @property {string} url
 * @property {number} pgid  process group whose CPU time is counted
 * @property {() => boolean} running
 * @property {() => Promise<void>} stop
 */

/**
 * @typedef {object} Variant
 * @property {string} key  command-line name
 * @property {string} label  row label
 * @property {'reference' | 'peer' | 'gatehouse' | 'protocol' | 'multi'} group
 * @property {'wrk' | 'h2load'} [load]  default wrk
 * @property {Record<string, string>} [headers]
 * @property {string} [reference]  the "vs nginx" row (default nginx)
 * @property {string} [note]
 * @property {boolean} [extra]  not run by default (only when named)
 * @property {Array<'redis' | 'sinks' | 'jwt' | 'apiKey' | 'tls' | 'altNode'>} [needs]
 * @property {(env: Env) => Promise<Started>} start
 * @property {(env: Env, url: string) => Promise<void>} [verify]  throws when the stage is not on
 *   (checked once after the start, so that a row cannot measure a config that does nothing)
 */

/**
 * Gatehouse on the SUT core with the benchmark config changed by `configure`.
 * @param {Env} env
 * @param {(c: Config) => Config} [configure]
 * @param {{ cpu?: number | string, node?: string, stdout?: 'collect' | 'ignore' }} [opts]
 * @returns {Promise<Started>}
 */
async function gatehouse(env, configure, opts = {}) {
  const gw = await startGatehouse({
    repoDir: REPO_DIR,
    upstreamUrl: env.upstream.url,
    cpu: opts.cpu ?? SUT_CPU,
    ...(configure ? { configure } : {}),
    ...(opts.node ? { node: opts.node } : {}),
    stdout: opts.stdout ?? 'ignore',
  });
  return {
    url: gw.url,
    pgid: /** @type {number} */ (gw.proc.child.pid),
    running: gw.running,
    stop: gw.stop,
  };
}

/**
 * A Node peer from peers/<name>.js on the SUT core (its dependencies in bench/node_modules).
 * @param {string} name
 * @param {Env} env
 * @returns {Promise<Started>}
 */
async function nodePeer(name, env) {
  if (!existsSync(path.join(BENCH_DIR, 'node_modules'))) {
    throw new Error(`the peers are not installed: run  cd ${BENCH_DIR} && npm ci`);
  }
  const port = await freePort();
  const proc = spawnProcess({
    name,
    cmd: process.execPath,
    args: [path.join(BENCH_DIR, 'peers', `${name}.js`), '--port', String(port), '--target', env.upstream.url],
    cwd: BENCH_DIR,
    cpu: SUT_CPU,
    env: { NODE_ENV: 'production' },
  });
  try {
    await waitForPort(port, { isAlive: proc.running, what: name });
  } catch (err) {
    await proc.stop();
    throw new Error(`${err instanceof Error ? err.message : err}\n${proc.output()}`);
  }
  return {
    url: `http://127.0.0.1:${port}/`,
    pgid: /** @type {number} */ (proc.child.pid),
    running: proc.running,
    stop: () => proc.stop(),
  };
}

/**
 * @param {{ upstreamPort: number, workers?: number, cpu?: number | string }} o
 * @returns {Promise<Started>}
 */
async function nginxProxy({ upstreamPort, workers = 1, cpu = SUT_CPU }) {
  const p = await startNginx({ name: `nginx-proxy-${workers}w`, upstreamPort, keepalive: 64, cpu, workers });
  return {
    url: p.url,
    pgid: /** @type {number} */ (p.proc.child.pid),
    running: p.proc.running,
    stop: p.stop,
  };
}

/** @param {Env} env */
const keyPrefix = (env) => `bench:${process.pid}:${env.upstream.port}:`;

/**
 * A GET without credentials must be refused with 401.
 * @param {Env} _env
 * @param {string} url
 */
async function verifyAuth(_env, url) {
  const res = await httpGet(url);
  if (res.status !== 401) throw new Error(`a request without credentials got ${res.status}, not 401`);
}

/**
 * A GET (with `headers`) must carry the rate-limit headers.
 * @param {string} url
 * @param {Record<string, string>} headers
 */
async function verifyLimit(url, headers) {
  const res = await httpGet(url, { headers });
  if (res.status !== 200 || res.headers['x-ratelimit-limit'] === undefined) {
    throw new Error(`the limited route answered ${res.status} without X-RateLimit-Limit`);
  }
}

/** The rows, in table order. */
/** @type {Variant[]} */
const VARIANTS = [
  {
    key: 'direct',
    label: 'direct (no proxy)',
    group: 'reference',
    note: "direct: wrk straight to the upstream; its CPU µs/req is the upstream nginx's own (on the load core)",
    start: async (env) => ({
      url: env.upstream.url,
      pgid: env.upstream.pgid,
      running: () => true,
      stop: async () => {},
    }),
  },
  {
    key: 'nginx',
    label: 'nginx, 1 worker',
    group: 'reference',
    start: (env) => nginxProxy({ upstreamPort: env.upstream.port }),
  },
  {
    key: 'haproxy',
    label: 'HAProxy, 1 thread',
    group: 'reference',
    start: async (env) => {
      const h = await startHaproxy({ upstreamPort: env.upstream.port, cpu: SUT_CPU });
      return {
        url: h.url,
        pgid: /** @type {number} */ (h.proc.child.pid),
        running: h.proc.running,
        stop: h.stop,
      };
    },
  },
  ...PEERS.map(
    (name) =>
      /** @type {Variant} */ ({
        key: name,
        label: name === 'undici-naive' ? 'undici-naive (40 lines, undici 7)' : name,
        group: 'peer',
        start: (env) => nodePeer(name, env),
      }),
  ),
  {
    key: 'gatehouse',
    label: `gatehouse plain (node ${process.versions.node})`,
    group: 'gatehouse',
    start: (env) => gatehouse(env),
  },
  {
    key: 'gatehouse-jwt',
    label: 'gatehouse + JWT (RS256, cached)',
    group: 'gatehouse',
    needs: ['jwt'],
    headers: {},
    start: (env) => gatehouse(env, (c) => withJwt(c, env.jwt)),
    verify: verifyAuth,
  },
  {
    key: 'gatehouse-apikey',
    label: 'gatehouse + API key (SQLite)',
    group: 'gatehouse',
    needs: ['apiKey'],
    start: (env) => gatehouse(env, (c) => withApiKey(c, env.apiKey)),
    verify: verifyAuth,
  },
  {
    key: 'gatehouse-limit',
    label: 'gatehouse + Redis limit',
    group: 'gatehouse',
    needs: ['redis'],
    start: (env) =>
      gatehouse(env, (c) => withRateLimit(c, { redisUrl: env.redisUrl, keyPrefix: keyPrefix(env) })),
    verify: (_env, url) => verifyLimit(url, {}),
  },
  {
    key: 'gatehouse-accesslog',
    label: 'gatehouse + access log (_bulk)',
    group: 'gatehouse',
    needs: ['sinks'],
    start: (env) => gatehouse(env, (c) => withAccessLog(c, env)),
  },
  {
    key: 'gatehouse-tracing',
    label: 'gatehouse + tracing 10 %',
    group: 'gatehouse',
    needs: ['sinks'],
    start: (env) => gatehouse(env, (c) => withTracing(c, { otlpUrl: env.otlpUrl, sampleRate: 0.1 })),
  },
  {
    key: 'gatehouse-full',
    label: 'gatehouse full pipeline',
    group: 'gatehouse',
    needs: ['jwt', 'redis', 'sinks'],
    note:
      'full pipeline: JWT (RS256, cached) + RBAC + Redis sliding-window limit per consumer + metrics + ' +
      'access log to _bulk + tracing at 10 %',
    start: (env) =>
      gatehouse(env, (c) =>
        withTracing(
          withAccessLog(
            withRateLimit(withRbac(withJwt(c, env.jwt)), {
              redisUrl: env.redisUrl,
              keyPrefix: `${keyPrefix(env)}full:`,
              by: 'tier',
            }),
            env,
          ),
          { otlpUrl: env.otlpUrl, sampleRate: 0.1 },
        ),
      ),
    verify: async (env, url) => {
      await verifyAuth(env, url);
      await verifyLimit(url, { Authorization: `Bearer ${env.jwt.token}` });
      const denied = await httpGet(url, { headers: { Authorization: `Bearer ${env.jwt.roleless}` } });
      if (denied.status !== 403) throw new Error(`a token without the role got ${denied.status}, not 403`);
    },
  },
  {
    key: 'gatehouse-tls',
    label: 'gatehouse HTTPS/1.1',
    group: 'protocol',
    needs: ['tls'],
    start: async (env) => {
      const s = await gatehouse(env, (c) => ({
        ...c,
        listen: { .../** @type {Config} */ (c.listen), tls: env.tls },
      }));
      return { ...s, url: s.url.replace(/^http:/, 'https:') };
    },
  },
  {
    key: 'gatehouse-h2',
    label: 'gatehouse HTTP/2 (TLS, h2load)',
    group: 'protocol',
    load: 'h2load',
    needs: ['tls'],
    note: 'HTTP/2: loaded by h2load (64 connections, 1 stream each), not wrk; p50/p99 from its per-request log',
    start: async (env) => {
      const s = await gatehouse(env, (c) => ({
        ...c,
        listen: { .../** @type {Config} */ (c.listen), tls: env.tls },
      }));
      return { ...s, url: s.url.replace(/^http:/, 'https:') };
    },
  },
  {
    key: 'gatehouse-alt-node',
    label: 'gatehouse plain (node ALT)',
    group: 'gatehouse',
    needs: ['altNode'],
    start: (env) => gatehouse(env, undefined, { node: env.altNode }),
  },
  {
    key: 'nginx-2w',
    label: 'nginx, 2 workers (both cores)',
    group: 'multi',
    note: '2 workers / 2 processes: pinned to both cores, which wrk and the upstream share: compare these two rows with each other',
    start: (env) => nginxProxy({ upstreamPort: env.upstream.port, workers: 2, cpu: BOTH_CPUS }),
  },
  {
    key: 'gatehouse-2w',
    label: 'gatehouse workers: 2 (both cores)',
    group: 'multi',
    reference: 'nginx-2w',
    start: (env) => gatehouse(env, (c) => ({ ...c, workers: 2 }), { cpu: BOTH_CPUS }),
  },
  {
    key: 'nginx-close',
    label: 'nginx, Connection: close',
    group: 'reference',
    extra: true,
    headers: { Connection: 'close' },
    reference: 'nginx-close',
    start: (env) => nginxProxy({ upstreamPort: env.upstream.port }),
  },
  {
    key: 'gatehouse-close',
    label: 'gatehouse, Connection: close',
    group: 'gatehouse',
    extra: true,
    headers: { Connection: 'close' },
    reference: 'nginx-close',
    start: (env) => gatehouse(env),
  },
];

function readSettings() {
  const quick = process.env.BENCH_QUICK === '1';
  const duration = process.env.BENCH_DURATION || (quick ? '3s' : '8s');
  const warmupRaw = process.env.BENCH_WARMUP ?? (quick ? '1s' : '2s');
  const warmup = warmupRaw === '' || warmupRaw === '0' ? null : warmupRaw;
  const latencyRaw = process.env.BENCH_LATENCY_DURATION ?? (quick ? '3s' : '10s');
  const latencyDuration = latencyRaw === '0' || latencyRaw === '' ? null : latencyRaw;
  try {
    parseDurationS(duration);
    if (warmup) parseDurationS(warmup);
    if (latencyDuration) parseDurationS(latencyDuration);
  } catch (err) {
    fail(err instanceof Error ? err.message : String(err));
  }
  const roundsDefault = quick ? 1 : 3;
  const rounds = envNumber('BENCH_ROUNDS', envNumber('BENCH_RUNS', roundsDefault, { integer: true }), {
    integer: true,
  });
  return {
    quick,
    rounds,
    duration,
    warmup,
    latencyDuration,
    latencyRounds: quick ? 1 : 2,
    connections: envNumber('BENCH_CONNECTIONS', 64, { integer: true }),
    altNodeVersion: process.env.BENCH_ALT_NODE || '24.22.3',
    docs: process.env.BENCH_DOCS,
  };
}

/** @returns {Variant[]} */
function parseVariants() {
  const args = process.argv.slice(2);
  if (args.includes('-h') || args.includes('--help') || args.includes('--list')) {
    console.log(`usage: node run.js [ROW...]   (default: every row not marked extra)
rows: ${VARIANTS.map((v) => `${v.key}${v.extra ? ' (extra)' : ''}`).join(', ')}
env: BENCH_QUICK=1 BENCH_ROUNDS=3 BENCH_DURATION=8s BENCH_WARMUP=2s BENCH_CONNECTIONS=64
     BENCH_LATENCY_DURATION=10s BENCH_ALT_NODE=24.22.3 BENCH_DOCS=0|1`);
    process.exit(0);
  }
  const keys = VARIANTS.map((v) => v.key);
  const unknown = args.filter((a) => !keys.includes(a));
  if (unknown.length) fail(`unknown row(s) ${unknown.join(', ')}; known: ${keys.join(', ')}`);
  return args.length ? VARIANTS.filter((v) => args.includes(v.key)) : VARIANTS.filter((v) => !v.extra);
}

/** Installs the missing tools from Debian when root (nginx, wrk, haproxy, h2load); checks taskset. */
function ensureTools() {
  const tools = [
    ['nginx', 'nginx'],
    ['wrk', 'wrk'],
    ['haproxy', 'haproxy'],
    ['h2load', 'nghttp2-client'],
    ['redis-server', 'redis-server'],
  ];
  const missing = tools.filter(([bin]) => !which(/** @type {string} */ (bin)));
  if (missing.length) {
    const packages = missing.map(([, pkg]) => pkg).join(' ');
    if (process.getuid?.() !== 0) fail(`missing tools: run  sudo apt-get install -y ${packages}`);
    console.log(`installing ${packages} from Debian (apt-get)…`);
    const res = spawnSync(
      'sh',
      ['-c', `apt-get install -y ${packages} || (apt-get update && apt-get install -y ${packages})`],
      { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } },
    );
    if (res.status !== 0) fail(`apt-get could not install ${packages}`);
  }
  if (!which('taskset')) fail('taskset is missing (Debian package util-linux)');
}

/**
 * The other Node's binary, fetched once from the npm registry (scripts/fetch-node.sh).
 * @param {string} version
 */
function altNodeBinary(version) {
  const res = spawnSync('bash', [path.join(REPO_DIR, 'scripts', 'fetch-node.sh'), version], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const bin = path.join(res.stdout.trim(), 'bin', 'node');
  if (res.status !== 0 || !existsSync(bin)) throw new Error(`could not fetch node ${version}`);
  return bin;
}

/**
 * One measured run of a started system: wrk (or h2load) for `duration`, and the CPU ticks of the
 * system's process group over that window.
 * @param {Variant} v
 * @param {Started} sys
 * @param {{ duration: string, connections: number, hz: number }} o
 * @returns {Promise<import('./lib/table.js').RunFigures>}
 */
async function loadOnce(v, sys, { duration, connections, hz }) {
  const before = groupTicks(sys.pgid);
  if (v.load === 'h2load') {
    // at least 3 s: h2load counts nothing when its 64 TLS handshakes outlast the duration
    const h2Duration = `${Math.max(3, parseDurationS(duration))}s`;
    const r = await runH2load({ url: sys.url, duration: h2Duration, connections, streams: 1, cpu: LOAD_CPU });
    const ticks = ticksBetween(before, groupTicks(sys.pgid));
    if (r.protocol !== 'h2') throw new Error(`h2load negotiated ${r.protocol ?? 'nothing'}, not h2`);
    return {
      rps: r.rps,
      p50Ms: r.latencyMs.p50,
      p99Ms: r.latencyMs.p99,
      cpuUs: cpuPerRequestUs(ticks, r.requests, hz),
      requests: r.requests,
      errors: r.failed + r.non2xx,
    };
  }
  const r = await runWrk({
    url: sys.url,
    duration,
    connections,
    threads: 1,
    cpu: LOAD_CPU,
    headers: v.headers ?? {},
  });
  const ticks = ticksBetween(before, groupTicks(sys.pgid));
  return {
    rps: r.rps,
    p50Ms: r.latencyMs.p50,
    p99Ms: r.latencyMs.p99,
    cpuUs: cpuPerRequestUs(ticks, r.requests, hz),
    requests: r.requests,
    errors: r.errorCount,
  };
}

/**
 * Open-loop latency: lib/fixed-rate-client.js at `rate` req/s on the load core.
 * @param {{ url: string, rate: number, duration: string }} o
 */
async function fixedRate({ url, rate, duration }) {
  const proc = spawnProcess({
    name: 'fixed-rate',
    cmd: process.execPath,
    args: [
      path.join(BENCH_DIR, 'lib', 'fixed-rate-client.js'),
      '--url',
      url,
      '--rate',
      String(rate),
      '--duration',
      String(parseDurationS(duration)),
      '--warmup',
      '2',
    ],
    cwd: BENCH_DIR,
    cpu: LOAD_CPU,
    collect: true,
  });
  const guard = setTimeout(() => proc.kill('SIGKILL'), (parseDurationS(duration) + 20) * 1000);
  const { code } = await proc.exited;
  clearTimeout(guard);
  if (code !== 0) throw new Error(`fixed-rate client failed: ${proc.output()}`);
  return JSON.parse(proc.stdout().trim().split('\n').at(-1) ?? '{}');
}

/** @param {string} bin @param {string[]} args @param {RegExp} re */
function versionOf(bin, args, re) {
  return re.exec(runSync(bin, args).output)?.[1] ?? null;
}

/** Versions of the peers from their package.json in bench/node_modules. */
function peerVersions() {
  /** @type {Record<string, string>} */
  const out = {};
  for (const pkg of ['fast-gateway', 'fastify', '@fastify/http-proxy', 'http-proxy', 'undici']) {
    try {
      out[pkg] = JSON.parse(
        readFileSync(path.join(BENCH_DIR, 'node_modules', pkg, 'package.json'), 'utf8'),
      ).version;
    } catch {
      out[pkg] = 'not installed';
    }
  }
  return out;
}

async function main() {
  const variants = parseVariants();
  const settings = readSettings();
  ensureTools();
  installCleanupHooks();
  // counted before the runner pins itself (availableParallelism() then answers 1)
  const cpuCount = os.availableParallelism();
  if (cpuCount < 2) fail('needs 2 CPUs or more: one for the system under test, one for the load');
  pinSelf(LOAD_CPU); // the runner stays off the core of the system under test
  const hz = clockTicks();
  const perRun = parseDurationS(settings.duration) + 3;
  const latencyS = settings.latencyDuration
    ? (parseDurationS(settings.latencyDuration) + 8) * 2 * settings.latencyRounds
    : 0;
  const budgetS =
    120 +
    variants.length *
      (20 + (settings.warmup ? parseDurationS(settings.warmup) + 2 : 0) + settings.rounds * perRun) +
    latencyS;
  giveUpAfter(budgetS);

  const needs = new Set(variants.flatMap((v) => v.needs ?? []));
  const versions = {
    node: process.versions.node,
    nginx: versionOf(which('nginx') ?? 'nginx', ['-v'], /nginx\/(\S+)/),
    haproxy: haproxyVersion(),
    redis: redisVersion(),
    wrk: versionOf('wrk', ['-v'], /wrk (\S+)/),
    h2load: versionOf('h2load', ['--version'], /nghttp2\/(\S+)/),
    peers: peerVersions(),
    altNode: needs.has('altNode') ? settings.altNodeVersion : null,
    cpu: os.cpus()[0]?.model ?? '',
    kernel: `${os.type()} ${os.release()}`,
  };
  console.log(`Gatehouse side-by-side benchmark: ${variants.map((v) => v.key).join(', ')}`);
  console.log(
    `${settings.rounds} interleaved round(s) of wrk -t1 -c${settings.connections} -d${settings.duration} per row, ` +
      `after one ${settings.warmup ?? 'no'} warm-up each; medians. System under test on CPU ${SUT_CPU}; ` +
      `wrk, the upstream, Redis and the fake collectors on CPU ${LOAD_CPU}. At most ${Math.round(budgetS / 60)} min.`,
  );
  const busyBefore = await sampleCpuBusy(1000);
  const loadBefore = os.loadavg()[0] ?? Number.NaN;
  if (busyBefore !== null && busyBefore > 0.1) {
    console.warn(
      `warning: the CPUs were ${Math.round(busyBefore * 100)} % busy before starting: other processes are ` +
        'running: requests/s will be noisy, and CPU per request rises too (the cores and their caches are ' +
        'shared); compare rows of this run only',
    );
  }

  // Shared pieces, on the load core.
  const dir = makeTempDir('gatehouse-bench-run-');
  const upstreamNginx = await startNginx({ name: 'upstream', body: UPSTREAM_BODY, cpu: LOAD_CPU });
  const probe = await httpGet(upstreamNginx.url);
  if (probe.status !== 200 || probe.body !== UPSTREAM_BODY) {
    throw new Error(`the upstream answered ${probe.status} with an unexpected body: ${probe.body}`);
  }
  /** @type {Array<() => Promise<void>>} */
  const stops = [upstreamNginx.stop];
  const env = /** @type {Env} */ ({
    upstream: {
      url: upstreamNginx.url,
      port: upstreamNginx.port,
      pgid: /** @type {number} */ (upstreamNginx.proc.child.pid),
    },
  });
  if (needs.has('redis')) {
    const redis = await startRedis({ cpu: LOAD_CPU });
    env.redisUrl = redis.url;
    stops.push(redis.stop);
  }
  /** @type {import('./lib/fake-sinks.js').FakeSink | null} */
  let es = null;
  /** @type {import('./lib/fake-sinks.js').FakeSink | null} */
  let otlp = null;
  if (needs.has('sinks')) {
    es = await startFakeSink({ kind: 'elasticsearch', cpu: LOAD_CPU });
    otlp = await startFakeSink({ kind: 'otlp', cpu: LOAD_CPU });
    env.esUrl = es.url;
    env.otlpUrl = otlp.url;
    stops.push(es.stop, otlp.stop);
  }
  /** @type {string | undefined} */
  let jwtToken;
  if (needs.has('jwt')) {
    const fixture = jwtFixture(dir);
    jwtToken = fixture.token(0);
    env.jwt = { pem: fixture.pem, token: jwtToken, roleless: fixture.token(1, { roles: [] }) };
  }
  if (needs.has('apiKey')) env.apiKey = createApiKey({ repoDir: REPO_DIR, dir });
  if (needs.has('tls')) env.tls = selfSignedCertificate(dir);
  if (needs.has('altNode')) {
    try {
      env.altNode = altNodeBinary(settings.altNodeVersion);
    } catch (err) {
      console.warn(`warning: ${err instanceof Error ? err.message : err}: its row is skipped`);
    }
  }
  for (const v of variants) {
    if (v.key === 'gatehouse-alt-node') v.label = `gatehouse plain (node ${settings.altNodeVersion})`;
    if (v.needs?.includes('jwt') && jwtToken)
      v.headers = { ...v.headers, Authorization: `Bearer ${jwtToken}` };
    if (v.needs?.includes('apiKey') && env.apiKey) v.headers = { ...v.headers, 'x-api-key': env.apiKey.key };
  }

  // Every system is started once and stays up for all rounds (an idle one takes no CPU; memory is
  // plenty): a round then measures systems in the same warm state, and no start-up lands in a window.
  /** @type {Map<string, Started>} */
  const started = new Map();
  /** @type {import('./lib/table.js').Row[]} */
  const rows = variants.map((v) => ({
    key: v.key,
    label: v.label,
    group: v.group,
    runs: [],
    ...(v.reference ? { reference: v.reference } : {}),
    ...(v.note ? { note: v.note } : {}),
  }));
  const rowOf = (/** @type {string} */ key) =>
    /** @type {import('./lib/table.js').Row} */ (rows.find((r) => r.key === key));
  const t0 = Date.now();
  for (const v of variants) {
    const row = rowOf(v.key);
    try {
      if (v.needs?.includes('altNode') && !env.altNode)
        throw new Error(`node ${settings.altNodeVersion} is missing`);
      const sys = await v.start(env);
      started.set(v.key, sys);
      stops.push(sys.stop);
      const isTls = sys.url.startsWith('https:');
      const check =
        v.load === 'h2load' || isTls ? null : await httpGet(sys.url, { headers: v.headers ?? {} });
      if (check && check.status !== 200)
        throw new Error(`the check request answered ${check.status}: ${check.body.slice(0, 200)}`);
      await v.verify?.(env, sys.url);
      console.log(`started ${v.key.padEnd(20)} ${sys.url}${check ? ` (check: ${check.status})` : ''}`);
    } catch (err) {
      row.skipped = err instanceof Error ? err.message : String(err);
      console.log(`skipped ${v.key}: ${row.skipped.split('\n').slice(0, 6).join('\n    ')}`);
    }
  }
  if (settings.warmup) {
    console.log(`\nwarm-up (${settings.warmup} each)`);
    for (const v of variants) {
      const sys = started.get(v.key);
      if (!sys) continue;
      try {
        await loadOnce(v, sys, { duration: settings.warmup, connections: settings.connections, hz });
      } catch (err) {
        console.log(`  ! warm-up of ${v.key} failed: ${err instanceof Error ? err.message : err}`);
      }
    }
  }
  for (let round = 1; round <= settings.rounds; round++) {
    console.log(`\nround ${round}/${settings.rounds}`);
    for (const v of variants) {
      const sys = started.get(v.key);
      const row = rowOf(v.key);
      if (!sys || row.skipped) continue;
      if (!sys.running()) {
        row.skipped = `${v.key} exited before round ${round}`;
        console.log(`  ! ${row.skipped}`);
        continue;
      }
      try {
        const r = await loadOnce(v, sys, {
          duration: settings.duration,
          connections: settings.connections,
          hz,
        });
        row.runs.push(r);
        console.log(
          `  ${v.key.padEnd(20)} ${formatInt(r.rps).padStart(7)} rps  p50 ${formatMs(r.p50Ms).padStart(6)} ms  ` +
            `p99 ${formatMs(r.p99Ms).padStart(6)} ms  ${r.cpuUs.toFixed(1).padStart(6)} µs CPU/req` +
            (r.errors ? `  ERRORS ${r.errors}` : ''),
        );
      } catch (err) {
        console.log(`  ! ${v.key}: ${err instanceof Error ? err.message : err}`);
      }
    }
  }

  // Open-loop latency at half of Gatehouse's measured maximum, against direct calls at the same rate.
  /** @type {{ rate: number, runs: Array<{ system: string, result: Record<string, number> }> } | null} */
  let latency = null;
  const s = summaries(rows);
  const plain = s.get('gatehouse');
  const gwSys = started.get('gatehouse');
  if (settings.latencyDuration && plain && gwSys && Number.isFinite(plain.rps)) {
    const rate = Math.max(100, Math.round(plain.rps / 2 / 100) * 100);
    latency = { rate, runs: [] };
    console.log(
      `\nfixed rate ${rate} req/s (half of gatehouse plain's ${formatInt(plain.rps)} rps), open loop`,
    );
    for (let i = 0; i < settings.latencyRounds; i++) {
      for (const [system, url] of [
        ['direct', env.upstream.url],
        ['gatehouse', gwSys.url],
      ]) {
        try {
          const result = await fixedRate({
            url: /** @type {string} */ (url),
            rate,
            duration: settings.latencyDuration,
          });
          latency.runs.push({ system: /** @type {string} */ (system), result });
          console.log(
            `  ${String(system).padEnd(10)} p50 ${result.p50Ms} ms  p99 ${result.p99Ms} ms  p99.9 ${result.p999Ms} ms` +
              `  (${result.completed}/${result.sent} answered, ${result.errors + result.non2xx} errors)`,
          );
        } catch (err) {
          console.log(`  ! ${system}: ${err instanceof Error ? err.message : err}`);
        }
      }
    }
  }
  // What the collectors got: the access-log and tracing rows really shipped (over all their rows).
  /** @type {string[]} */
  const sinkNotes = [];
  try {
    if (es)
      sinkNotes.push(
        `access log: the fake _bulk sink received ${formatInt((await es.stats()).items)} documents`,
      );
    if (otlp)
      sinkNotes.push(
        `tracing: the fake OTLP receiver received ${formatInt((await otlp.stats()).items)} spans`,
      );
  } catch (err) {
    sinkNotes.push(`could not read the fake collectors' counts: ${err instanceof Error ? err.message : err}`);
  }
  const elapsedS = Math.round((Date.now() - t0) / 1000);
  const loadAfter = os.loadavg()[0] ?? Number.NaN;
  for (const stop of stops.reverse()) {
    try {
      await stop();
    } catch {
      // already gone
    }
  }

  // The report.
  const table = markdownTable(rows);
  const targets = checkTargets(rows, {
    plain: 'gatehouse',
    full: 'gatehouse-full',
    nginx: 'nginx',
    peers: PEERS,
  });
  if (latency) {
    const p99 = (/** @type {string} */ sys) =>
      median(
        latency?.runs.filter((r) => r.system === sys).map((r) => Number(r.result.p99Ms ?? Number.NaN)) ?? [],
      );
    targets.push(
      checkAddedLatency({ rate: latency.rate, directP99Ms: p99('direct'), gatehouseP99Ms: p99('gatehouse') }),
    );
  }
  const targetLines = formatTargets(targets);
  const notes = [
    ...rows.filter((r) => r.note && !r.skipped).map((r) => /** @type {string} */ (r.note)),
    ...sinkNotes,
    ...rows.filter((r) => r.skipped).map((r) => `${r.key}: skipped (${r.skipped?.split('\n')[0]})`),
    ...rows
      .filter((r) => !r.skipped && r.runs.length < settings.rounds)
      .map((r) => `${r.key}: ${r.runs.length} of ${settings.rounds} rounds measured`),
  ];
  const command = `${settings.quick ? 'BENCH_QUICK=1 ' : ''}npm run bench${
    process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''
  }`;
  const envLine = [
    'BENCH_ROUNDS',
    'BENCH_DURATION',
    'BENCH_WARMUP',
    'BENCH_CONNECTIONS',
    'BENCH_LATENCY_DURATION',
    'BENCH_ALT_NODE',
  ]
    .filter((k) => process.env[k])
    .map((k) => `${k}=${process.env[k]}`)
    .join(' ');
  const fullCommand = `${envLine ? `${envLine} ` : ''}${command}`;
  const versionLine =
    `node ${versions.node}${versions.altNode ? ` and ${versions.altNode}` : ''}; nginx ${versions.nginx}; ` +
    `HAProxy ${versions.haproxy}; Redis ${versions.redis}; wrk ${versions.wrk}; h2load (nghttp2) ${versions.h2load}; ` +
    Object.entries(versions.peers)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ');
  console.log(`\n${table}\n`);
  for (const n of notes) console.log(`- ${n}`);
  console.log('\nTargets (issue 16 item 3; decided on CPU per request, requests/s beside):');
  for (const line of targetLines) console.log(`  ${line}`);
  console.log(`\n${versionLine}`);

  const date = new Date();
  const resultsDir = path.join(BENCH_DIR, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `run-${date.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(
    file,
    `${JSON.stringify(
      {
        date: date.toISOString(),
        command: fullCommand,
        elapsedS,
        settings,
        cpuBusyBefore: busyBefore,
        loadAverage: { before: loadBefore, after: loadAfter },
        clockTicks: hz,
        versions,
        rows,
        summaries: Object.fromEntries(s),
        latency,
        targets,
        table,
      },
      null,
      2,
    )}\n`,
  );
  console.log(`raw results: ${path.relative(process.cwd(), file) || file}`);

  const writeDocs =
    settings.docs === '1' || (settings.docs !== '0' && !settings.quick && process.argv.length <= 2);
  if (writeDocs) {
    const section = [
      `Generated by \`${fullCommand}\` on ${date.toISOString().slice(0, 16).replace('T', ' ')} UTC ` +
        `(${elapsedS} s; ${settings.rounds} interleaved rounds of ${settings.duration} per row after a ` +
        `${settings.warmup ?? 'no'} warm-up; the machine was ${busyBefore === null ? '?' : Math.round(busyBefore * 100)} % busy before the run, ` +
        `load average ${loadBefore.toFixed(1)} before and ${loadAfter.toFixed(1)} at the end, on ${cpuCount} CPUs).`,
      '',
      `Versions: ${versionLine}. CPU: ${versions.cpu}, ${versions.kernel}.`,
      '',
      table,
      '',
      ...notes.map((n) => `- ${n}`),
      '',
      'Targets (decided on CPU per request; the ratio on requests/s beside it):',
      '',
      ...targetLines.map((l) => `- ${l}`),
    ].join('\n');
    const doc = existsSync(DOCS_FILE) ? readFileSync(DOCS_FILE, 'utf8') : '# Benchmarks\n';
    writeFileSync(DOCS_FILE, replaceSection(doc, section, MARKERS));
    // The repository's prettier aligns the table's columns, as the docs' lint check expects.
    const prettier = path.join(REPO_DIR, 'node_modules', '.bin', 'prettier');
    const formatted =
      existsSync(prettier) && spawnSync(prettier, ['--write', DOCS_FILE], { stdio: 'ignore' }).status === 0;
    console.log(
      `written: ${path.relative(process.cwd(), DOCS_FILE)}${formatted ? '' : ' (not formatted: prettier is missing)'}`,
    );
  }
}

main().catch((err) => {
  console.error(`bench: ${err instanceof Error ? (err.stack ?? err.message) : err}`);
  process.exit(1);
});
