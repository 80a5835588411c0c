// What the soak and the memory benchmark share: the full-pipeline Gatehouse config (JWT + RBAC,
// API keys in SQLite, a Redis sliding-window limit, the access log to a `_bulk` sink, tracing
// sampled, metrics), its fixtures (RS256 tokens, an API key made with the CLI), the upstream
// processes and reading /metrics.
import { generateKeyPairSync, sign } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parsePrometheus } from './fake-sinks.js';
import { toYaml } from './gatehouse.js';
import { freePort, httpGet, waitForPort } from './net.js';
import { runSync, spawnProcess } from './proc.js';

const UPSTREAM = path.join(path.dirname(fileURLToPath(import.meta.url)), 'soak-upstream.js');
export const KEY_SECRET = 'soak-secret-0123456789abcdef';

const b64url = (/** @type {Buffer | string} */ v) => Buffer.from(v).toString('base64url');

/**
 * An RS256 key pair, its public key in `<dir>/jwt.pem`, and `count` tokens (subjects user-0…)
 * with role reader and tier soak, valid for a day.
 * @param {string} dir @param {number} count
 */
export function jwtFixture(dir, count) {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = path.join(dir, 'jwt.pem');
  writeFileSync(pem, publicKey.export({ type: 'spki', format: 'pem' }));
  const header = b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: 'soak' }));
  const exp = Math.floor(Date.now() / 1000) + 86_400;
  const tokens = Array.from({ length: count }, (_, i) => {
    const payload = b64url(
      JSON.stringify({
        sub: `user-${i}`,
        iss: 'soak',
        aud: 'gatehouse',
        exp,
        roles: ['reader'],
        tier: 'soak',
      }),
    );
    const sig = sign('RSA-SHA256', Buffer.from(`${header}.${payload}`), privateKey);
    return `${header}.${payload}.${b64url(sig)}`;
  });
  return { pem, tokens };
}

/**
 * Creates an API key (tier soak, role reader) in the SQLite file `dbFile` with `gatehouse keys create`.
 * @param {{ repoDir: string, dir: string, dbFile: string }} opts
 */
export function createApiKey({ repoDir, dir, dbFile }) {
  const keyConfig = path.join(dir, 'keys.yaml');
  writeFileSync(keyConfig, toYaml({ database: { file: dbFile }, auth: { apiKey: { secret: KEY_SECRET } } }));
  const created = runSync(process.execPath, [
    path.join(repoDir, 'bin', 'gatehouse.js'),
    ...['keys', 'create', '--name', 'soak', '--tier', 'soak', '--roles', 'reader', '-c', keyConfig],
  ]);
  const key = /gh_[A-Za-z0-9_]+/.exec(created.output)?.[0];
  if (!key) throw new Error(`could not create an API key:\n${created.output}`);
  return key;
}

/**
 * The full pipeline: every stage on. Routes: /api/data/** (JWT or API key, permission data:read)
 * to service app; with `extraRoutes`, more. Access log to the Elasticsearch sink only (stdout off).
 * @param {object} opts
 * @param {Record<string, unknown>} opts.base  startGatehouse's generated config (listen, admin)
 * @param {string} opts.pem  @param {string} opts.dbFile  @param {string} opts.redisUrl
 * @param {string} opts.esUrl  @param {string} opts.otlpUrl
 * @param {Record<string, unknown>} opts.services  must include `app`
 * @param {Array<Record<string, unknown>>} [opts.extraRoutes]
 * @param {string} opts.keyPrefix  the rate-limit key prefix
 * @param {string} [opts.redisTimeout]  `redis.timeout` (the gateway's default: 50ms)
 */
export function fullPipelineConfig({
  base,
  pem,
  dbFile,
  redisUrl,
  esUrl,
  otlpUrl,
  services,
  extraRoutes = [],
  keyPrefix,
  redisTimeout,
}) {
  const generous = { limits: [{ requests: 1_000_000_000, per: '1m' }] };
  return {
    listen: base.listen,
    admin: base.admin,
    workers: 1,
    database: { file: dbFile },
    redis: { url: redisUrl, ...(redisTimeout ? { timeout: redisTimeout } : {}) },
    auth: {
      jwt: { publicKeys: [pem], issuer: 'soak', audience: 'gatehouse' },
      apiKey: { secret: KEY_SECRET },
    },
    rbac: { roles: { reader: ['data:read'], admin: ['admin:write'] } },
    rateLimit: {
      // while Redis is away each process counts in memory, then Redis decides again
      onStoreError: 'local',
      keyPrefix,
      anonymousTier: 'anonymous',
      defaultTier: 'soak',
      tiers: { soak: generous, anonymous: generous },
    },
    logging: {
      access: {
        stdout: false,
        elasticsearch: { url: esUrl, index: 'soak', batchSize: 500, flushInterval: '1s', maxBuffer: 10000 },
      },
    },
    tracing: { otlpUrl, sampleRate: 0.1 },
    services,
    routes: [
      {
        name: 'data',
        match: { path: '/api/data/**' },
        service: 'app',
        auth: ['jwt', 'apiKey'],
        permissions: ['data:read'],
      },
      ...extraRoutes,
    ],
  };
}

/**
 * An upstream (lib/soak-upstream.js) in its own process.
 * @param {string} name @param {number | null} cpu
 */
export async function startUpstream(name, cpu) {
  const port = await freePort();
  const proc = spawnProcess({
    name,
    cmd: process.execPath,
    args: [UPSTREAM, '--port', String(port), '--name', name],
    cpu,
  });
  await waitForPort(port, { isAlive: proc.running, what: name });
  const url = `http://127.0.0.1:${port}`;
  return {
    name,
    url,
    proc,
    /** requests it answered, or null once it is gone */
    async requests() {
      try {
        return /** @type {{ requests: number }} */ (JSON.parse((await httpGet(`${url}/__stats`)).body))
          .requests;
      } catch {
        return null;
      }
    },
  };
}

/**
 * The gateway's /metrics, parsed.
 * @param {string} adminUrl
 */
export async function scrape(adminUrl) {
  const res = await httpGet(`${adminUrl}/metrics`, { timeoutMs: 5000 });
  if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}`);
  return parsePrometheus(res.body);
}
