/**
 * API keys when the database is slow or hung, through a real gateway (in-process) whose
 * PostgreSQL connections go through a TCP proxy the test controls:
 * - a flood of made-up key ids on a slow database costs a few batched SELECTs, and legitimate
 *   keys, cached or not, keep getting 200 (no 503 from a saturated pool tripping fail-fast);
 * - a hung database: once it is known down, only one request per fail-fast window waits for
 *   it, every other one gets its 503 at once; recovery is automatic;
 * - a client that leaves during a slow key lookup is not forwarded upstream.
 */
import { request as httpRequest } from 'node:http';
import { randomBytes } from 'node:crypto';
import { Agent, fetch } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createKey } from '../../src/auth/api-keys/manage.js';
import { PostgresKeyRepository } from '../../src/stores/postgres-keys.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { PgProxy } from '../helpers/pg-proxy.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { createSchema, type PrivateSchema } from '../integration/api-keys-db.js';

const SECRET = 'store-faults-secret-0123456789ab';
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const bogusKey = () =>
  'gh_' + [...randomBytes(55)].map((b, i) => ALPHABET[b % 62] + (i === 11 ? '_' : '')).join('');

let upstream: Upstream;
let schema: PrivateSchema;
let repo: PostgresKeyRepository;
let proxy: PgProxy;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startUpstream();
  schema = await createSchema();
  repo = new PostgresKeyRepository(schema.url);
  await repo.migrate();
});
afterAll(async () => {
  await repo?.close();
  await schema?.drop();
  await upstream?.close();
  await client.close();
});

async function startThroughProxy(): Promise<void> {
  proxy = new PgProxy();
  await proxy.start();
  gw = await startGateway(`
database: { url: '${proxy.urlFor(schema.url)}' }
services: { api: { targets: ['${upstream.url}'] } }
routes: [ { name: keyed, match: { path: /keyed/** }, service: api, auth: [apiKey] } ]
auth: { apiKey: { secret: '${SECRET}' } }
logging: { level: silent }
`);
}
afterEach(async () => {
  await proxy?.close(); // first: a hung connection would hold the gateway's shutdown
  await gw?.close();
});

/** up to 400 requests at once (more would overflow the listen backlog: resets, not answers) */
const client = new Agent({ connections: 400 });

async function status(key: string, path = '/keyed/x'): Promise<number> {
  const res = await fetch(`${gw.url}${path}`, { headers: { 'x-api-key': key }, dispatcher: client });
  await res.arrayBuffer();
  return res.status;
}

const count = (statuses: number[], s: number) => statuses.filter((x) => x === s).length;

describe('a flood of made-up key ids on a slow database', () => {
  it('costs few SELECTs, and legitimate keys, cached or not, still get 200', async () => {
    await startThroughProxy();
    const cached = await Promise.all(
      Array.from({ length: 10 }, () => createKey(repo, SECRET, { name: 'c', tier: 'free' })),
    );
    const uncached = await Promise.all(
      Array.from({ length: 10 }, () => createKey(repo, SECRET, { name: 'u', tier: 'free' })),
    );
    for (const k of cached) expect(await status(k.key)).toBe(200);
    proxy.latencyMs = 50; // every answer from the database takes 50 ms more
    const before = proxy.selects;
    const flood = Array.from({ length: 2000 }, () => status(bogusKey()));
    const legit = [...cached, ...uncached].map((k, i) => status(k.key, `/keyed/legit${i}`));
    const bogus = await Promise.all(flood);
    const legitimate = await Promise.all(legit);
    const selects = proxy.selects - before;
    console.log(
      `flood of 2000 made-up ids: ${selects} SELECTs; made-up: ${count(bogus, 401)} × 401, ` +
        `${count(bogus, 503)} × 503; legitimate: ${count(legitimate, 200)} × 200, ${count(legitimate, 503)} × 503`,
    );
    expect(legitimate).toEqual(legitimate.map(() => 200));
    expect(count(bogus, 401)).toBe(2000);
    expect(selects).toBeLessThan(500); // one per id before: 2000
  });
});

describe('a hung database', () => {
  it('once known down, one request per fail-fast window waits; the others get 503 at once', async () => {
    await startThroughProxy();
    const key = await createKey(repo, SECRET, { name: 'h', tier: 'free' });
    expect(await status(bogusKey())).toBe(401); // the pool is warm
    proxy.hang();
    const started = performance.now();
    const results: Array<{ sent: number; ms: number; status: number }> = [];
    const pending: Array<Promise<void>> = [];
    while (performance.now() - started < 7_000) {
      const sent = performance.now();
      pending.push(
        status(bogusKey()).then((s) => {
          results.push({ sent, ms: performance.now() - sent, status: s });
        }),
      );
      await new Promise((r) => setTimeout(r, 50));
    }
    await Promise.all(pending);
    for (const r of results) expect(r.status).toBe(503);
    // the first answer tells the database is down; from then on, who waited?
    const known = Math.min(...results.map((r) => r.sent + r.ms));
    const after = results.filter((r) => r.sent > known);
    const waited = after.filter((r) => r.ms > 500).length;
    const seconds = (performance.now() - known) / 1000;
    console.log(
      `hung database: ${results.filter((r) => r.ms > 500).length} of ${results.length} requests waited > 500 ms; ` +
        `after the first 503: ${waited} of ${after.length} over ${seconds.toFixed(1)} s`,
    );
    expect(waited).toBeLessThanOrEqual(Math.ceil(seconds) + 1);
    proxy.unhang();
    const deadline = performance.now() + 10_000;
    let s = 0;
    while (performance.now() < deadline && (s = await status(key.key)) !== 200) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(s).toBe(200);
  });
});

describe('a client that leaves during a slow key lookup', () => {
  it('is not forwarded upstream', async () => {
    await startThroughProxy();
    const { key } = await createKey(repo, SECRET, { name: 'gone', tier: 'free' });
    proxy.latencyMs = 300;
    const selects = proxy.selects;
    const req = httpRequest(`${gw.url}/keyed/gone`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-length': '0' },
      agent: false,
    });
    req.on('error', () => undefined);
    req.end();
    while (proxy.selects === selects) await new Promise((r) => setTimeout(r, 5)); // the lookup is sent
    req.destroy(); // the client gives up while the key is looked up (its answer is 300 ms away)
    // the same key, asked for after: its answer comes with (or after) the lookup the POST waited for
    expect(await status(key, '/keyed/after')).toBe(200);
    expect(await status(key, '/keyed/later')).toBe(200);
    const paths = upstream.received.map((r) => `${r.method} ${r.url}`);
    expect(paths).toContain('GET /keyed/later');
    expect(paths).not.toContain('POST /keyed/gone');
  });
});
