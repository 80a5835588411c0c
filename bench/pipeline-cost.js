#!/usr/bin/env node
// CPU per request of the full pipeline against plain proxying and nginx's plain proxying, at 64
// keep-alive connections: JWT RS256 (one token, the verified-token cache answers) + RBAC + a Redis
// sliding-window limit per consumer + metrics + access log to a fake Elasticsearch `_bulk` sink +
// tracing sampled at 10 % to a fake OTLP receiver.
//
//   node bench/pipeline-cost.js [other-checkout ...]
//
// The gateway runs alone on CPU 1; wrk, the nginx upstream, the private redis-server and the fake
// sinks share CPU 0, so their CPU is not charged to the gateway. Variants run in interleaved
// rounds; CPU per request is the process group's utime + stime (/proc) over a wrk run divided by
// the requests wrk completed. Each extra checkout (built, with `bin/` and `dist/`) adds a Redis-limit and a
// full pipeline row of its own, for a before/after. Env: BENCH_ROUNDS (3), BENCH_DURATION (10s),
// BENCH_VARIANTS (comma-separated subset of nginx,plain,limit,full).
import { spawn, spawnSync } from 'node:child_process';
import { generateKeyPairSync, sign } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { groupCpuUs } from './lib/cpu.js';
import { startFakeSink } from './lib/fake-sinks.js';
import { startGatehouse } from './lib/gatehouse.js';
import { median } from './lib/measure.js';
import { freePort } from './lib/net.js';
import { startNginx, UPSTREAM_BODY } from './lib/nginx.js';
import { installCleanupHooks, makeTempDir, pinSelf } from './lib/proc.js';
import { runWrk } from './lib/wrk.js';

const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const duration = process.env.BENCH_DURATION ?? '10s';
const only = process.env.BENCH_VARIANTS?.split(',');

/**
 * @param {number} port
 * @param {...string} args
 */
function redisCli(port, ...args) {
  return spawnSync('redis-cli', ['-p', String(port), ...args]).stdout.toString();
}

/** A public key file and one RS256 token with a role, valid for a day. */
function jwtFixture() {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = path.join(makeTempDir('gatehouse-bench-jwt-'), 'jwt.pem');
  writeFileSync(pem, publicKey.export({ type: 'spki', format: 'pem' }));
  const b64 = (/** @type {string | Buffer} */ v) => Buffer.from(v).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    sub: 'bench-user',
    iss: 'bench',
    aud: 'gatehouse',
    roles: ['reader'],
    iat: now,
    exp: now + 86_400,
  };
  const input = `${b64(JSON.stringify({ alg: 'RS256', typ: 'JWT' }))}.${b64(JSON.stringify(claims))}`;
  return { pem, token: `${input}.${b64(sign('RSA-SHA256', Buffer.from(input), privateKey))}` };
}

async function main() {
  installCleanupHooks();
  const [loadCpu, sutCpu] = os.availableParallelism() >= 2 ? [0, 1] : [null, null];
  if (loadCpu !== null) pinSelf(loadCpu);
  const redisPort = await freePort();
  const redisArgs = ['redis-server', '--port', String(redisPort), '--save', '', '--appendonly', 'no'];
  const redis =
    loadCpu === null
      ? spawn(redisArgs[0], redisArgs.slice(1), { stdio: 'ignore' })
      : spawn('taskset', ['-c', String(loadCpu), ...redisArgs], { stdio: 'ignore' });
  /** @type {Array<{ stop: () => Promise<void> }>} */
  const stoppable = [];
  try {
    for (let i = 0; i < 50 && !redisCli(redisPort, 'ping').includes('PONG'); i++)
      await new Promise((r) => setTimeout(r, 100));
    const upstream = await startNginx({ name: 'upstream', body: UPSTREAM_BODY, cpu: loadCpu });
    stoppable.push(upstream);
    const es = await startFakeSink({ kind: 'elasticsearch', cpu: loadCpu });
    const otlp = await startFakeSink({ kind: 'otlp', cpu: loadCpu });
    stoppable.push(es, otlp);
    const jwt = jwtFixture();
    const auth = { authorization: `Bearer ${jwt.token}` };
    const redisLimit = (/** @type {Record<string, any>} */ c) => ({
      ...c,
      redis: { url: `redis://127.0.0.1:${redisPort}` },
      rateLimit: {
        keyPrefix: 'bench:',
        onStoreError: 'closed', // a Redis problem shows as errors, not as a silent fallback
        defaultTier: 'bench',
        tiers: {
          anonymous: { limits: [{ requests: 1_000_000_000, per: '1m' }] },
          bench: { limits: [{ requests: 1_000_000_000, per: '1m' }] },
        },
      },
    });
    const full = (/** @type {Record<string, any>} */ c) => ({
      ...redisLimit(c),
      auth: { jwt: { publicKeys: [jwt.pem], issuer: 'bench', audience: 'gatehouse' } },
      rbac: { roles: { reader: ['bench:read'] } },
      logging: {
        access: {
          elasticsearch: {
            url: es.url,
            index: 'gatehouse-access',
            batchSize: 500,
            flushInterval: '1s',
            maxBuffer: 10000,
          },
        },
      },
      tracing: { otlpUrl: otlp.url, sampleRate: 0.1 },
      routes: c.routes.map((/** @type {object} */ r) => ({
        ...r,
        auth: ['jwt'],
        permissions: ['bench:read'],
        rateLimit: 'tier',
      })),
    });
    const checkouts = [REPO_DIR, ...process.argv.slice(2).map((p) => path.resolve(p))];
    /** @type {Array<{ key: string, name: string, repoDir?: string, configure?: (c: any) => any, headers: Record<string, string> }>} */
    const all = [
      { key: 'nginx', name: 'nginx (plain proxy)', headers: {} },
      { key: 'plain', name: 'gatehouse plain', repoDir: REPO_DIR, configure: (c) => c, headers: {} },
      ...checkouts.map((repoDir, i) => ({
        key: 'limit',
        name: `gatehouse Redis limit (ip)${i === 0 ? '' : ` (${path.basename(repoDir)})`}`,
        repoDir,
        configure: (/** @type {any} */ c) => ({
          ...redisLimit(c),
          routes: c.routes.map((/** @type {object} */ r) => ({ ...r, rateLimit: 'ip' })),
        }),
        headers: {},
      })),
      ...checkouts.map((repoDir, i) => ({
        key: 'full',
        name: `gatehouse full pipeline${i === 0 ? '' : ` (${path.basename(repoDir)})`}`,
        repoDir,
        configure: full,
        headers: auth,
      })),
    ];
    const variants = all.filter((v) => only === undefined || only.includes(v.key));
    /** @type {Array<{ url: string, pid: number, stop: () => Promise<void>, output: () => string }>} */
    const systems = [];
    for (const v of variants) {
      if (v.repoDir === undefined) {
        const n = await startNginx({ name: 'nginx-proxy', upstreamPort: upstream.port, cpu: sutCpu });
        systems.push({
          url: n.url,
          pid: /** @type {number} */ (n.proc.child.pid),
          stop: n.stop,
          output: n.proc.output,
        });
      } else {
        const gw = await startGatehouse({
          repoDir: v.repoDir,
          upstreamUrl: upstream.url,
          cpu: sutCpu,
          configure: v.configure,
        });
        systems.push({
          url: gw.url,
          pid: /** @type {number} */ (gw.proc.child.pid),
          stop: gw.stop,
          output: gw.proc.output,
        });
      }
      stoppable.push(systems[systems.length - 1]);
    }
    const results = variants.map(() => ({
      cpu: /** @type {number[]} */ ([]),
      rps: /** @type {number[]} */ ([]),
      errors: 0,
    }));
    for (let i = 0; i < variants.length; i++)
      await runWrk({
        url: systems[i].url,
        duration: '3s',
        connections: 64,
        cpu: loadCpu,
        headers: variants[i].headers,
      });
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < variants.length; i++) {
        const cpu0 = groupCpuUs(systems[i].pid);
        const run = await runWrk({
          url: systems[i].url,
          duration,
          connections: 64,
          cpu: loadCpu,
          headers: variants[i].headers,
        });
        const cpu = groupCpuUs(systems[i].pid) - cpu0;
        results[i].cpu.push(cpu / run.requests);
        results[i].rps.push(run.rps);
        results[i].errors += run.errorCount;
      }
    }
    variants.forEach((v, i) => {
      if (results[i].errors > 0)
        console.log(
          `${v.name}: last log lines\n${systems[i].output().trim().split('\n').slice(-3).join('\n')}`,
        );
    });
    const cpuOf = (/** @type {string} */ key) => {
      const i = variants.findIndex((v) =>
        v.key === key && v.repoDir !== undefined ? v.repoDir === REPO_DIR : v.key === key,
      );
      return i < 0 ? null : median(results[i].cpu);
    };
    const nginx = cpuOf('nginx');
    const plain = cpuOf('plain');
    console.log('\n| system | CPU µs/request | vs plain | nginx efficiency | rps | errors |');
    console.log('|---|---:|---:|---:|---:|---:|');
    variants.forEach((v, i) => {
      const cpu = median(results[i].cpu);
      const vsPlain =
        plain === null || v.key === 'plain' || v.key === 'nginx'
          ? ''
          : `+${(((cpu - plain) / plain) * 100).toFixed(0)} %`;
      const eff = nginx === null ? '' : `${((nginx / cpu) * 100).toFixed(0)} %`;
      console.log(
        `| ${v.name} | ${cpu.toFixed(1)} | ${vsPlain} | ${eff} | ${Math.round(median(results[i].rps))} | ${results[i].errors} |`,
      );
    });
    console.log(
      `\n${rounds} interleaved rounds of ${duration}, wrk -t1 -c64 keep-alive, medians; CPU per round:`,
    );
    variants.forEach((v, i) =>
      console.log(`  ${v.name}: ${results[i].cpu.map((c) => c.toFixed(1)).join(' ')}`),
    );
  } finally {
    for (const s of stoppable.reverse()) await s.stop().catch(() => {});
    redis.kill('SIGTERM');
  }
}

main().catch((err) => {
  console.error(`bench: ${err instanceof Error ? (err.stack ?? err.message) : err}`);
  process.exit(1);
});
