// The Gatehouse features a benchmark turns on, as changes to the benchmark config (lib/gatehouse.js
// benchConfig), and the credentials they need: one copy for run.js, auth.js, ratelimit.js and
// observability.js, so that "JWT" or "Redis limit" means the same config in every table.
import { generateKeyPairSync, sign } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { toYaml } from './gatehouse.js';
import { runSync } from './proc.js';

/** @typedef {Record<string, unknown>} Config */

export const JWT_ISSUER = 'bench';
export const JWT_AUDIENCE = 'gatehouse';
/** `auth.apiKey.secret` of every benchmark config (keys are stored as HMACs under it). */
export const API_KEY_SECRET = 'bench-secret-0123456789abcdef';
/** Elasticsearch sink settings: the documented defaults, written out so that the output shows them. */
export const ES_SETTINGS = Object.freeze({
  index: 'gatehouse-access',
  batchSize: 500,
  flushInterval: '1s',
  maxBuffer: 10000,
});
/** A limit no benchmark reaches: every request is counted, none refused (the cost of deciding). */
export const UNREACHABLE_LIMIT = Object.freeze({ requests: 1_000_000_000, per: '1m' });

const b64url = (/** @type {Buffer | string} */ v) => Buffer.from(v).toString('base64url');

/**
 * An RS256 key pair: the public key as a PEM file in `dir` (for `auth.jwt.publicKeys`), and a signer
 * of tokens the gateway accepts (valid for two hours).
 * @param {string} dir
 * @returns {{ pem: string, token: (i?: number, claims?: Record<string, unknown>) => string }}
 */
export function jwtFixture(dir) {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = path.join(dir, 'jwt.pem');
  writeFileSync(pem, publicKey.export({ type: 'spki', format: 'pem' }));
  const header = b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid: 'bench' }));
  const exp = Math.floor(Date.now() / 1000) + 7200;
  return {
    pem,
    token(i = 0, claims = {}) {
      const payload = b64url(
        JSON.stringify({
          sub: `user-${i}`,
          iss: JWT_ISSUER,
          aud: JWT_AUDIENCE,
          exp,
          roles: ['r'],
          ...claims,
        }),
      );
      const sig = sign('RSA-SHA256', Buffer.from(`${header}.${payload}`), privateKey);
      return `${header}.${payload}.${b64url(sig)}`;
    },
  };
}

/**
 * Creates an API key in a SQLite key store (`dir`/keys.db) with the gateway's own CLI, and returns
 * the key and the `database` section that reads that store.
 * @param {{ repoDir: string, dir: string, node?: string }} opts
 * @returns {{ key: string, database: Config }}
 */
export function createApiKey({ repoDir, dir, node = process.execPath }) {
  const database = { file: path.join(dir, 'keys.db') };
  const keyConfig = path.join(dir, 'keys.yaml');
  writeFileSync(keyConfig, toYaml({ database, auth: { apiKey: { secret: API_KEY_SECRET } } }));
  const created = runSync(node, [
    path.join(repoDir, 'bin', 'gatehouse.js'),
    'keys',
    'create',
    '--name',
    'bench',
    '--tier',
    'bench',
    '-c',
    keyConfig,
  ]);
  const key = /gh_[A-Za-z0-9_]+/.exec(created.output)?.[0];
  if (!key) throw new Error(`could not create an API key:\n${created.output}`);
  return { key, database };
}

/**
 * @param {Config} config
 * @param {(route: Config) => Config} change
 * @returns {Config}
 */
function mapRoutes(config, change) {
  return { ...config, routes: /** @type {Config[]} */ (config.routes).map(change) };
}

/**
 * The route needs a JWT verified with the public key `pem` (RS256; the verified-token cache answers
 * when the same token comes again).
 * @param {Config} config
 * @param {{ pem: string }} opts
 * @returns {Config}
 */
export function withJwt(config, { pem }) {
  const auth = /** @type {Config} */ (config.auth ?? {});
  return mapRoutes(
    {
      ...config,
      auth: { ...auth, jwt: { publicKeys: [pem], issuer: JWT_ISSUER, audience: JWT_AUDIENCE } },
    },
    (r) => ({ ...r, auth: [.../** @type {string[]} */ (r.auth ?? []), 'jwt'] }),
  );
}

/**
 * The route needs an API key from the store `database` (the key cache answers after the first use).
 * @param {Config} config
 * @param {{ database: Config }} opts
 * @returns {Config}
 */
export function withApiKey(config, { database }) {
  const auth = /** @type {Config} */ (config.auth ?? {});
  return mapRoutes({ ...config, database, auth: { ...auth, apiKey: { secret: API_KEY_SECRET } } }, (r) => ({
    ...r,
    auth: [.../** @type {string[]} */ (r.auth ?? []), 'apiKey'],
  }));
}

/**
 * RBAC: role `r` (the role of jwtFixture's tokens) grants `bench:read`, which the route requires.
 * @param {Config} config
 * @returns {Config}
 */
export function withRbac(config) {
  return mapRoutes({ ...config, rbac: { roles: { r: ['bench:read'] } } }, (r) => ({
    ...r,
    permissions: ['bench:read'],
  }));
}

/**
 * A sliding-window limit far above the load, per client IP (`by: 'ip'`) or per consumer (`'tier'`,
 * for authenticated routes), counted in Redis (`redisUrl`) or in memory (`redisUrl` null).
 * `onStoreError: closed`: a Redis problem shows as errors, not as a silent fallback.
 * @param {Config} config
 * @param {{ redisUrl: string | null, keyPrefix: string, by?: 'ip' | 'tier' }} opts
 * @returns {Config}
 */
export function withRateLimit(config, { redisUrl, keyPrefix, by = 'ip' }) {
  return mapRoutes(
    {
      ...config,
      ...(redisUrl ? { redis: { url: redisUrl } } : {}),
      rateLimit: {
        keyPrefix,
        onStoreError: 'closed',
        defaultTier: 'bench',
        tiers: { anonymous: { limits: [UNREACHABLE_LIMIT] }, bench: { limits: [UNREACHABLE_LIMIT] } },
      },
    },
    (r) => ({ ...r, rateLimit: by }),
  );
}

/**
 * `logging.access` and `tracing` sections (either may be absent).
 * @param {Config} config
 * @param {{ access?: Config, tracing?: Config }} obs
 * @returns {Config}
 */
export function withObservability(config, { access, tracing }) {
  return {
    ...config,
    ...(access ? { logging: { access } } : {}),
    ...(tracing ? { tracing } : {}),
  };
}

/**
 * Access log to an Elasticsearch `_bulk` endpoint (the fake sink of lib/fake-sinks.js).
 * @param {Config} config
 * @param {{ esUrl: string }} opts
 * @returns {Config}
 */
export function withAccessLog(config, { esUrl }) {
  return withObservability(config, { access: { elasticsearch: { url: esUrl, ...ES_SETTINGS } } });
}

/**
 * Spans exported over OTLP/HTTP, `sampleRate` of the new traces.
 * @param {Config} config
 * @param {{ otlpUrl: string, sampleRate: number }} opts
 * @returns {Config}
 */
export function withTracing(config, { otlpUrl, sampleRate }) {
  return { ...config, tracing: { otlpUrl, sampleRate } };
}
