#!/usr/bin/env node
// CPU time of the full pipeline's hot pieces, in process (no HTTP), for this checkout and another
// built one (before/after): a JWT cache hit through `JwtVerifier.quick` (same token, a new string
// each call, as the HTTP parser gives), the access record's time, the RateLimit headers, and a
// Redis-limit decision through the failure policy (GuardedStore over RedisStore, 64 decisions per
// event-loop turn, against the Redis at REDIS_URL; CPU of this process per decision).
//
//   npm run build && node bench/pipeline-pieces.js <other-built-checkout>
//
// CPU time (process.cpuUsage), median of 5 runs per piece; the Redis part in 3 interleaved rounds.
import { generateKeyPairSync, sign } from 'node:crypto';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const other = process.argv[2];
const checkouts = [
  ...(other === undefined ? [] : [{ label: path.basename(path.resolve(other)), dir: path.resolve(other) }]),
  { label: 'this checkout', dir: REPO_DIR },
];
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const cpu = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

/**
 * ns of CPU per call of `fn`, median of 5 runs
 * @param {string} name
 * @param {(i: number) => unknown} fn
 */
function time(name, fn, n = 300_000) {
  for (let i = 0; i < 20_000; i++) fn(i);
  const runs = [];
  for (let r = 0; r < 5; r++) {
    const t0 = cpu();
    for (let i = 0; i < n; i++) fn(i);
    runs.push(((cpu() - t0) * 1000) / n);
  }
  runs.sort((a, b) => a - b);
  console.log(`  ${name}: ${Math.round(runs[2] ?? 0)} ns`);
}

/** an RS256 token (its signature is never checked here: the cache is filled directly) */
function token() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const b64 = (/** @type {string | Buffer} */ v) => Buffer.from(v).toString('base64url');
  const claims = { sub: 'bench-user', iss: 'bench', aud: 'gatehouse', roles: ['reader'], exp: 4_000_000_000 };
  const input = `${b64(JSON.stringify({ alg: 'RS256', typ: 'JWT' }))}.${b64(JSON.stringify(claims))}`;
  return `${input}.${b64(sign('RSA-SHA256', Buffer.from(input), privateKey))}`;
}

const silent = { warn() {}, info() {}, error() {}, debug() {}, child: () => silent };

async function pieces() {
  const jwt = token();
  for (const { label, dir } of checkouts) {
    console.log(label);
    const { JwtVerifier } = await import(`${dir}/dist/auth/jwt/verifier.js`);
    const { TokenCache } = await import(`${dir}/dist/auth/jwt/token-cache.js`);
    const record = await import(`${dir}/dist/observability/access-log/record.js`);
    const headers = await import(`${dir}/dist/ratelimit/headers.js`);
    const keys = {
      generation: 0,
      loaded: true,
      lookup: async () => ({ kind: 'unavailable' }),
      ready: async () => undefined,
      close() {},
      onKeysRemoved() {},
    };
    const config = {
      algorithms: ['RS256'],
      clockTolerance: 60_000,
      requireExp: true,
      rolesClaim: 'roles',
      tierClaim: 'tier',
    };
    const verifier = new JwtVerifier(config, keys, undefined, undefined, null);
    const consumer = { id: 'bench-user', tier: '', roles: ['reader'] };
    verifier.cache.set(TokenCache.key(jwt), consumer, null, Date.now(), performance.now());
    const socket = {};
    if (verifier.quick(jwt, socket)?.kind !== 'ok') throw new Error(`${label}: no cache hit`);
    const tokens = Array.from({ length: 64 }, () => jwt.split('').join(''));
    time('JWT cache hit (quick)', (i) => verifier.quick(/** @type {string} */ (tokens[i & 63]), socket));
    const t0 = Date.now();
    const iso =
      typeof record.isoTime === 'function'
        ? (/** @type {number} */ t) => record.isoTime(t)
        : (/** @type {number} */ t) => new Date(t).toISOString();
    time('access-record time', (i) => iso(t0 + i * 0.1));
    const decision = {
      outcome: 'allowed',
      retryAfterSec: 0,
      tightest: 0,
      time: 0,
      policies: [
        { name: '1m', kind: 'limit', quota: 1_000_000_000, windowSec: 60, remaining: 999, resetSec: 60 },
      ],
    };
    time('RateLimit headers (both)', () => headers.appendRateLimitHeaders([], decision, 'both'));
  }
}

async function decisions() {
  /** @type {Record<string, number[]>} */
  const results = {};
  for (let round = 0; round < 3; round++) {
    for (const { label, dir } of checkouts) {
      const { RedisStore } = await import(`${dir}/dist/ratelimit/redis-store.js`);
      const { GuardedStore } = await import(`${dir}/dist/ratelimit/guarded-store.js`);
      const { connectRedis } = await import(`${dir}/dist/stores/redis.js`);
      const client = connectRedis({ url: REDIS_URL, timeout: 5000 });
      const store = new RedisStore(client, { expireAfterMs: 4000 });
      if (!(await store.ready(2000))) throw new Error(`Redis at ${REDIS_URL} is not reachable`);
      const guarded = new GuardedStore(store, 'closed', silent, { timeoutMs: 1000, coldTimeoutMs: 4000 });
      const plan = { tier: 't', limits: [{ requests: 1e9, windowMs: 60_000, name: '1m' }], quota: null };
      const turn = () =>
        Promise.all(
          Array.from({ length: 64 }, (_, i) => guarded.consume(`bench-pieces:{rl:t:c:user${i}}`, plan)),
        );
      for (let i = 0; i < 100; i++) await turn();
      const t0 = cpu();
      const n = 1500;
      for (let i = 0; i < n; i++) if ((await turn())[0] === 'closed') throw new Error('store unavailable');
      (results[label] ??= []).push((cpu() - t0) / (n * 64));
      client.disconnect();
    }
  }
  console.log('Redis-limit decision, µs of CPU per decision (3 interleaved rounds):');
  for (const [label, v] of Object.entries(results))
    console.log(`  ${label}: ${v.map((x) => x.toFixed(2)).join(' ')}`);
}

await pieces();
await decisions();
