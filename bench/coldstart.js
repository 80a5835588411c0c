#!/usr/bin/env node
// Cold start and memory, with the config of the full pipeline: JWT (RS256 PEM key) and API keys
// (SQLite file, or PostgreSQL), rate limits counted in Redis, metrics on the admin port.
//
//   1. cold start: from exec of `node bin/gatehouse.js start` (pinned to one core) to the first
//      200 of the admin GET /readyz, BENCH_STARTS times per key store, after one unmeasured start
//      (it migrates the store); RSS when ready;
//   2. memory under load: one gateway, wrk (JWT bearer, through auth, the Redis limiter and
//      metrics to an nginx upstream) in runs of BENCH_RSS_CHUNK until BENCH_REQUESTS requests;
//      RSS after each run.
//
//   node bench/coldstart.js [starts] [memory]      (default: both)
//
// Env: BENCH_STARTS (10), BENCH_REQUESTS (1000000), BENCH_RSS_CHUNK (20s), BENCH_STORES
// (sqlite,postgres), BENCH_VARIANTS (builds or settings to compare in the same run, their starts
// taken in turn: `name=VAR=value+VAR=value,name2=...`, e.g.
// `unbundled=GATEHOUSE_BUNDLE=off,bundled=`; default: one, as configured), REDIS_URL
// (redis://127.0.0.1:6379), DATABASE_URL (postgres://postgres@127.0.0.1:5432/test; a private
// schema is made and dropped), BENCH_GATEHOUSE_DIR (the checkout whose bin/ and dist/ run).
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, randomBytes, sign } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { toYaml } from './lib/gatehouse.js';
import { formatInt, median } from './lib/measure.js';
import { freePort, httpGet } from './lib/net.js';
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
import { envNumber, fail, giveUpAfter } from './lib/settings.js';
import { runWrk } from './lib/wrk.js';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const GATEHOUSE_DIR = path.resolve(process.env.BENCH_GATEHOUSE_DIR || path.join(BENCH_DIR, '..'));
const BIN = path.join(GATEHOUSE_DIR, 'bin', 'gatehouse.js');
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const SECRET = 'bench-coldstart-secret-0123456789abcdef';
const PARTS = ['starts', 'memory'];
const READY_POLL_MS = 2;

const b64url = (/** @type {Buffer | string} */ v) => Buffer.from(v).toString('base64url');

/** @param {number} pid */
function rssMiB(pid) {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

/**
 * CPU time the process has used, all its threads (the scheduler's nanoseconds): unlike the wall
 * time to ready, it does not count waiting for a core another process holds.
 * @param {number} pid
 */
function cpuMs(pid) {
  let ns = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // the thread ended
    }
  }
  return ns / 1e6;
}

/**
 * The V8 heap (used, and total as allocated) and the memory outside it, from the gateway's own
 * process metrics: whether RSS grows with the JavaScript heap or beside it.
 * @param {number} adminPort
 */
async function heapMiB(adminPort) {
  const text = (await httpGet(`http://127.0.0.1:${adminPort}/metrics`, { timeoutMs: 5000 })).body;
  const value = (/** @type {string} */ name) =>
    Number(new RegExp(`^${name} ([\\d.e+]+)`, 'm').exec(text)?.[1] ?? Number.NaN) / 1024 / 1024;
  return {
    used: value('nodejs_heap_size_used_bytes'),
    total: value('nodejs_heap_size_total_bytes'),
    // the young generation: on Node 24 it grows to 128 MiB under load, where Node 20's stops at 32
    young: value('nodejs_heap_space_size_total_bytes\\{space="new"\\}'),
    external: value('nodejs_external_memory_bytes'),
  };
}

/**
 * The full pipeline on one route: JWT or API key, limited per consumer in Redis.
 * @param {{ port: number, adminPort: number, upstreamUrl: string, pem: string, database: Record<string, unknown>, prefix: string }} o
 */
function fullConfig({ port, adminPort, upstreamUrl, pem, database, prefix }) {
  return {
    listen: { host: '127.0.0.1', port },
    admin: { host: '127.0.0.1', port: adminPort },
    workers: 1,
    redis: { url: REDIS_URL },
    database,
    auth: {
      jwt: { publicKeys: [pem], issuer: 'bench', audience: 'gatehouse' },
      apiKey: { secret: SECRET },
    },
    rateLimit: {
      keyPrefix: prefix,
      onStoreError: 'closed', // a Redis problem shows as errors, not as a silent fallback
      defaultTier: 'bench',
      tiers: { bench: { limits: [{ requests: 1_000_000_000, per: '1m' }] } },
    },
    services: { bench: { targets: [upstreamUrl.replace(/\/$/, '')], pool: { connections: 64 } } },
    routes: [{ name: 'bench', match: { path: '/**' }, service: 'bench', auth: ['jwt', 'apiKey'] }],
  };
}

/**
 * Starts the gateway pinned to `cpu` and times exec → first /readyz 200 (polled every 2 ms on
 * fresh connections).
 * @param {{ configPath: string, adminPort: number, cpu: number | null, env?: Record<string, string> }} o
 */
async function timedStart({ configPath, adminPort, cpu, env = {} }) {
  const t0 = process.hrtime.bigint();
  const proc = spawnProcess({
    name: 'gatehouse',
    cmd: process.execPath,
    args: [BIN, 'start', '-c', configPath],
    cpu,
    cwd: GATEHOUSE_DIR,
    env: { LOG_LEVEL: 'warn', ...env },
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (!proc.running()) throw new Error(`gatehouse exited before ready:\n${proc.output()}`);
    if (Date.now() > deadline) {
      await proc.stop();
      throw new Error(`gatehouse not ready within 30 s:\n${proc.output()}`);
    }
    try {
      const res = await httpGet(`http://127.0.0.1:${adminPort}/readyz`, { timeoutMs: 1000 });
      if (res.status === 200) break;
    } catch {
      // not listening yet
    }
    await sleep(READY_POLL_MS);
  }
  const readyMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const pid = /** @type {number} */ (proc.child.pid);
  return { proc, readyMs, cpuMs: cpuMs(pid), rss: rssMiB(pid), pid };
}

/**
 * What Node itself takes to start and exit (`node -e 0`, 5 times on the gateway's core): the wall
 * time (median) and the CPU time (mean, from the shell's `times`), to scale the figures by.
 * @param {number | null} cpu
 */
function nodeBoot(cpu) {
  const wall = [];
  for (let i = 0; i < 5; i++) {
    const t0 = process.hrtime.bigint();
    const args = ['-e', '0'];
    spawnSync(
      cpu === null ? process.execPath : 'taskset',
      cpu === null ? args : ['-c', String(cpu), process.execPath, ...args],
    );
    wall.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  const pin = cpu === null ? '' : `taskset -c ${cpu} `;
  const times = spawnSync(
    'bash',
    ['-c', `for i in 1 2 3 4 5; do ${pin}"$0" -e 0; done; times`, process.execPath],
    {
      encoding: 'utf8',
    },
  ).stdout;
  // second line: the children's user and system time, e.g. "0m0.452s 0m0.131s"
  const m = /^(\d+)m([\d.]+)s (\d+)m([\d.]+)s$/m.exec(times.trim().split('\n')[1] ?? '');
  const cpuMs = m
    ? ((Number(m[1]) * 60 + Number(m[2]) + Number(m[3]) * 60 + Number(m[4])) * 1000) / 5
    : Number.NaN;
  return { wallMs: median(wall), cpuMs };
}

/**
 * BENCH_VARIANTS: `name=VAR=value+VAR=value,...`; an empty list of variables is the environment
 * as it is.
 * @returns {Array<{ name: string, env: Record<string, string> }>}
 */
function variants() {
  const spec = process.env.BENCH_VARIANTS;
  if (!spec) return [{ name: '', env: {} }];
  return spec.split(',').map((part) => {
    const eq = part.indexOf('=');
    const name = eq < 0 ? part : part.slice(0, eq);
    const vars = eq < 0 ? '' : part.slice(eq + 1);
    /** @type {Record<string, string>} */
    const env = {};
    for (const v of vars.split('+').filter(Boolean)) {
      const i = v.indexOf('=');
      if (i < 1) fail(`BENCH_VARIANTS: ${v} is not VAR=value`);
      env[v.slice(0, i)] = v.slice(i + 1);
    }
    return { name, env };
  });
}

async function main() {
  const args = process.argv.slice(2);
  const unknown = args.filter((a) => !PARTS.includes(a));
  if (unknown.length) fail(`unknown part(s) ${unknown.join(', ')}; known: ${PARTS.join(', ')}`);
  const parts = args.length ? args : PARTS;
  const starts = envNumber('BENCH_STARTS', 10, { integer: true });
  const totalRequests = envNumber('BENCH_REQUESTS', 1_000_000, { integer: true });
  const chunk = process.env.BENCH_RSS_CHUNK || '20s';
  for (const tool of ['nginx', 'wrk', 'taskset', 'psql', 'redis-cli']) {
    if (!which(tool))
      fail(`${tool} is missing (Debian: nginx, wrk, util-linux, postgresql-client, redis-tools)`);
  }
  installCleanupHooks();
  // a bounded run: the starts take seconds, the load ~ requests / 5000 s on one core
  giveUpAfter(
    120 + starts * 2 * 10 * variants().length + (parts.includes('memory') ? totalRequests / 2000 + 60 : 0),
  );
  const [loadCpu, sutCpu] = os.availableParallelism() >= 2 ? [0, 1] : [null, null];
  if (loadCpu !== null) pinSelf(loadCpu);
  const busy = await sampleCpuBusy();
  console.log(
    `node ${process.version}, ${os.cpus()[0]?.model ?? ''}; gatehouse on CPU ${sutCpu}, the rest on CPU ${loadCpu}` +
      (busy === null ? '' : `; machine ${Math.round(busy * 100)} % busy before the run`),
  );

  const dir = makeTempDir('gatehouse-bench-coldstart-');
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = path.join(dir, 'jwt.pem');
  writeFileSync(pem, publicKey.export({ type: 'spki', format: 'pem' }));
  const header = b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT' }));
  const payload = b64url(
    JSON.stringify({
      sub: 'bench',
      iss: 'bench',
      aud: 'gatehouse',
      exp: Math.floor(Date.now() / 1000) + 7200,
    }),
  );
  const token = `${header}.${payload}.${b64url(sign('RSA-SHA256', Buffer.from(`${header}.${payload}`), privateKey))}`;

  const schema = `bench_coldstart_${randomBytes(4).toString('hex')}`;
  const psql = (/** @type {string} */ sql) => {
    const r = runSync('psql', [DATABASE_URL, '-v', 'ON_ERROR_STOP=1', '-qc', sql]);
    if (r.status !== 0) throw new Error(`psql: ${r.output}`);
  };
  psql(`CREATE SCHEMA ${schema}`);
  process.on('exit', () => runSync('psql', [DATABASE_URL, '-qc', `DROP SCHEMA IF EXISTS ${schema} CASCADE`]));
  const sep = DATABASE_URL.includes('?') ? '&' : '?';
  const stores = {
    sqlite: { file: path.join(dir, 'keys.db') },
    postgres: { url: `${DATABASE_URL}${sep}options=${encodeURIComponent(`-c search_path=${schema}`)}` },
  };

  const upstream = await startNginx({ name: 'upstream', body: UPSTREAM_BODY, cpu: loadCpu });
  const port = await freePort();
  let adminPort = await freePort();
  while (adminPort === port) adminPort = await freePort();
  const prefix = `bench:coldstart:${process.pid}:`;
  /** @param {keyof typeof stores} store */
  const writeConfig = (store) => {
    const file = path.join(dir, `${store}.yaml`);
    writeFileSync(
      file,
      toYaml(
        fullConfig({ port, adminPort, upstreamUrl: upstream.url, pem, database: stores[store], prefix }),
      ),
    );
    return file;
  };

  /** @param {string} configPath */
  const checkPipeline = async (configPath) => {
    const denied = await httpGet(`http://127.0.0.1:${port}/`);
    const allowed = await httpGet(`http://127.0.0.1:${port}/`, {
      headers: { authorization: `Bearer ${token}` },
    });
    if (denied.status !== 401 || allowed.status !== 200 || !allowed.headers['ratelimit']) {
      throw new Error(
        `${configPath}: expected 401 without credentials and 200 with RateLimit headers with the token, got ${denied.status} and ${allowed.status}`,
      );
    }
  };

  if (parts.includes('starts')) {
    const boot = nodeBoot(sutCpu);
    console.log(
      `\nnode -e 0 on the same core: ${boot.wallMs.toFixed(0)} ms (median of 5), ${boot.cpuMs.toFixed(0)} ms of CPU (mean)\n`,
    );
    const runs = variants();
    const named = runs.length > 1 || runs[0]?.name;
    console.log(
      `| ${named ? 'variant | ' : ''}key store | starts | exec → /readyz 200 (median, min–max) | CPU time to ready (median, min–max) | RSS at ready |`,
    );
    console.log(
      `| ${named ? '------- | ' : ''}--------- | -----: | ----------------------------------: | ----------------------------------: | -----------: |`,
    );
    const storeNames = /** @type {Array<keyof typeof stores>} */ (
      (process.env.BENCH_STORES || 'sqlite,postgres').split(',')
    );
    for (const store of storeNames) {
      if (!(store in stores)) fail(`BENCH_STORES: unknown key store ${store}`);
      const configPath = writeConfig(store);
      /** @type {Array<Array<{ readyMs: number, cpuMs: number, rss: number }>>} */
      const samples = runs.map(() => []);
      // unmeasured, one per variant: creates the key store's schema, fills a compile cache
      for (const v of runs) {
        const first = await timedStart({ configPath, adminPort, cpu: sutCpu, env: v.env });
        await checkPipeline(configPath);
        await first.proc.stop();
      }
      for (let i = 0; i < starts; i++) {
        for (const [j, v] of runs.entries()) {
          const s = await timedStart({ configPath, adminPort, cpu: sutCpu, env: v.env });
          samples[j]?.push(s);
          await checkPipeline(configPath);
          await s.proc.stop();
          const { code } = await s.proc.exited;
          if (code !== 0) throw new Error(`gatehouse exited ${code} after SIGTERM:\n${s.proc.output()}`);
        }
      }
      const ms = (/** @type {number} */ n) => `${n.toFixed(0)} ms`;
      for (const [j, v] of runs.entries()) {
        const got = samples[j] ?? [];
        const ready = got.map((x) => x.readyMs);
        const cpu = got.map((x) => x.cpuMs);
        console.log(
          `| ${named ? `${v.name} | ` : ''}${store} | ${starts} | ${ms(median(ready))} (${ms(Math.min(...ready))}–${ms(Math.max(...ready))}) | ` +
            `${ms(median(cpu))} (${ms(Math.min(...cpu))}–${ms(Math.max(...cpu))}) | ${median(got.map((x) => x.rss)).toFixed(1)} MiB |`,
        );
      }
    }
    console.log('\n(a table for bench/README.md; prettier aligns it)');
  }

  if (parts.includes('memory')) {
    const configPath = writeConfig('sqlite');
    const gw = await timedStart({ configPath, adminPort, cpu: sutCpu });
    await checkPipeline(configPath);
    console.log(`\nmemory under load (SQLite key store, JWT bearer, wrk -c 64 in runs of ${chunk}):\n`);
    console.log(
      '| requests served | req/s (last run) | non-2xx | RSS | V8 heap used | V8 heap total | of which young generation | external |',
    );
    console.log(
      '| --------------: | ---------------: | ------: | --: | -----------: | ------------: | ------------------------: | -------: |',
    );
    const mib = (/** @type {number} */ n) => `${n.toFixed(1)} MiB`;
    const row = async (
      /** @type {string} */ count,
      /** @type {string} */ rps,
      /** @type {string} */ non2xx,
    ) => {
      const heap = await heapMiB(adminPort);
      console.log(
        `| ${count} | ${rps} | ${non2xx} | ${mib(rssMiB(gw.pid))} | ${mib(heap.used)} | ${mib(heap.total)} | ${mib(heap.young)} | ${mib(heap.external)} |`,
      );
    };
    await row('0', '-', '-');
    let served = 0;
    let errors = 0;
    while (served < totalRequests) {
      const last = await runWrk({
        url: `http://127.0.0.1:${port}/`,
        duration: chunk,
        connections: 64,
        headers: { Authorization: `Bearer ${token}` },
        cpu: loadCpu,
      });
      served += last.requests;
      errors += last.errorCount;
      await row(formatInt(served), formatInt(last.rps), formatInt(last.errors.non2xx));
      if (last.requests === 0) break;
    }
    // what the gateway says the answers other than 200 were
    const metrics = (await httpGet(`http://127.0.0.1:${adminPort}/metrics`, { timeoutMs: 5000 })).body;
    const other = metrics
      .split('\n')
      .filter((l) => /^gatehouse_requests_total\{/.test(l) && !/status="200"/.test(l) && !/ 0$/.test(l));
    if (other.length > 0) console.log(`\nnot 200, by the gateway's count:\n${other.join('\n')}`);
    if (errors > 0) console.log(`\n${formatInt(errors)} errors (socket errors and non-2xx) in all`);
    await gw.proc.stop();
  }
  await upstream.stop();
}

main().catch((err) => {
  console.error(`bench: ${err instanceof Error ? (err.stack ?? err.message) : err}`);
  process.exit(1);
});
