/**
 * A route's own rate-limit key, limits and mode, through the real gateway on a private Redis:
 * route-scoped counters (a noisy route does not use up a consumer's budget on its other routes),
 * header keys (a missing header falls back to the client address; a forged value cannot reach
 * another subject's or another route's counter), shadow mode (nothing refused, no headers,
 * would_reject counted), and still one script call per request.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { AUDIENCE, ISSUER, makeKey, sign, type TestKey } from '../helpers/jwks.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

let redis: RedisServer;
let upstream: Upstream;
let key: TestKey;
let pem: string;
let gw: TestGateway | undefined;

beforeAll(async () => {
  [redis, upstream, key] = await Promise.all([startRedisServer(), startUpstream(), makeKey('k1')]);
  pem = join(mkdtempSync(join(tmpdir(), 'gatehouse-pem-')), 'key.pem');
  writeFileSync(pem, key.publicPem);
}, 30_000);
afterAll(async () => {
  await upstream?.close();
  await redis?.close();
});
afterEach(async () => {
  await gw?.close();
  gw = undefined;
});

let n = 0;
const config = () => `
trustedProxies: [127.0.0.1]
redis: { url: "${redis.url}", timeout: 1s }
auth:
  jwt: { algorithms: [RS256], issuer: "${ISSUER}", audience: ${AUDIENCE}, publicKeys: ["${pem}"] }
rateLimit:
  keyPrefix: "r${++n}:"
  tiers:
    anonymous: { limits: [{ requests: 3, per: 1m }] }
    free: { limits: [{ requests: 4, per: 1m }] }
services:
  echo: { targets: ["${upstream.url}"] }
routes:
  - { name: a, match: { path: /a/** }, service: echo, auth: [jwt], rateLimit: tier }
  - { name: "b:x", match: { path: /b/** }, service: echo, auth: [jwt] }
  - { name: noisy, match: { path: /noisy/** }, service: echo, auth: [jwt], rateLimit: { key: route+consumer } }
  - name: search
    match: { path: /search/** }
    service: echo
    auth: [jwt]
    rateLimit: { limits: [{ requests: 2, per: 1m }] }
  - name: tenant
    match: { path: /tenant/** }
    service: echo
    rateLimit: { key: "header:X-Tenant", limits: [{ requests: 2, per: 1m }] }
  - name: tenant2
    match: { path: /tenant2/** }
    service: echo
    rateLimit: { key: "header:x-tenant", limits: [{ requests: 2, per: 1m }] }
  - name: trial
    match: { path: /trial/** }
    service: echo
    auth: [jwt]
    rateLimit: { limits: [{ requests: 2, per: 1m }], mode: shadow }
`;

async function get(path: string, headers: Record<string, string> = {}): Promise<Response> {
  const res = await fetch(`${gw!.url}${path}`, { headers });
  await res.arrayBuffer();
  return res;
}
async function statuses(path: string, headers: Record<string, string>, count: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push((await get(path, headers)).status);
  return out;
}
const bearer = async (sub: string) => ({ authorization: `Bearer ${await sign(key, { sub })}` });

async function scriptCalls(): Promise<number> {
  const c = redis.client();
  try {
    const info = await c.info('commandstats');
    const calls = (cmd: string) =>
      Number(new RegExp(`^cmdstat_${cmd}:calls=(\\d+)`, 'm').exec(info)?.[1] ?? 0);
    return calls('evalsha') + calls('eval');
  } finally {
    c.disconnect();
  }
}

const metrics = async () => (await fetch(`${gw!.adminUrl}/metrics`)).text();

describe("a route's own limits and key", () => {
  it("own limits are counted for the route only, and leave the consumer's tier budget whole", async () => {
    gw = await startGateway(config());
    const u1 = await bearer('u1');
    const search = await get('/search/x', u1);
    expect(search.headers.get('ratelimit-policy')).toBe('"1m";q=2;w=60');
    expect(await statuses('/search/x', u1, 2)).toEqual([200, 429]);
    // the tier's 4 are untouched, and shared by the tier routes a and b:x
    expect(await statuses('/a/x', u1, 2)).toEqual([200, 200]);
    expect(await statuses('/b/x', u1, 3)).toEqual([200, 200, 429]);
    // another consumer has its own route counter
    expect(await statuses('/search/x', await bearer('u2'), 3)).toEqual([200, 200, 429]);
    const text = await metrics();
    expect(text).toContain('gatehouse_ratelimit_decisions_total{tier="route:search",result="allowed"} 4');
    expect(text).toContain(
      'gatehouse_ratelimit_decisions_total{tier="route:search",result="rate_limited"} 2',
    );
  });

  it("route+consumer: the tier's limits, with counters of the route's own", async () => {
    gw = await startGateway(config());
    const u1 = await bearer('u1');
    expect(await statuses('/noisy/x', u1, 5)).toEqual([200, 200, 200, 200, 429]);
    expect(await statuses('/a/x', u1, 5)).toEqual([200, 200, 200, 200, 429]);
  });

  it('makes one script call per request on routes with their own key or limits', async () => {
    gw = await startGateway(config());
    const u1 = await bearer('u1');
    await get('/a/x', u1); // warm: the script is loaded
    const before = await scriptCalls();
    await statuses('/search/x', u1, 3);
    await statuses('/noisy/x', u1, 2);
    await statuses('/tenant/x', { 'x-tenant': 't1' }, 3);
    expect((await scriptCalls()) - before).toBe(8);
  });

  it('header key: counted by the header value, by client address without it', async () => {
    gw = await startGateway(config());
    expect(await statuses('/tenant/x', { 'x-tenant': 't1' }, 3)).toEqual([200, 200, 429]);
    expect(await statuses('/tenant/x', { 'x-tenant': 't2' }, 2)).toEqual([200, 200]);
    // no header (or an empty one): the client address, through trustedProxies
    const from = { 'x-forwarded-for': '10.0.0.9' };
    expect(await statuses('/tenant/x', from, 1)).toEqual([200]);
    expect(await statuses('/tenant/x', { ...from, 'x-tenant': '' }, 2)).toEqual([200, 429]);
    expect(await statuses('/tenant/x', { 'x-forwarded-for': '10.0.0.10' }, 1)).toEqual([200]);
  });

  it('hostile: a forged header value shares no counter with an address, a consumer or another route', async () => {
    gw = await startGateway(config());
    const from = { 'x-forwarded-for': '10.0.0.9' };
    expect(await statuses('/tenant/x', from, 3)).toEqual([200, 200, 429]);
    // the exhausted address's own subject, forged as a header value: a counter of its own
    expect(await statuses('/tenant/x', { ...from, 'x-tenant': 'ip:10.0.0.9' }, 2)).toEqual([200, 200]);
    // a value naming a consumer or with the key's braces stays in this route's header counters
    expect(await statuses('/tenant/x', { 'x-tenant': 'c:u1' }, 3)).toEqual([200, 200, 429]);
    expect(await statuses('/tenant/x', { 'x-tenant': '}{rl:free:c:u1}' }, 3)).toEqual([200, 200, 429]);
    expect(await statuses('/a/x', await bearer('u1'), 4)).toEqual([200, 200, 200, 200]);
    // the same header value on another route with the same key: that route's own counter
    expect(await statuses('/tenant2/x', { 'x-tenant': 'c:u1' }, 3)).toEqual([200, 200, 429]);
  });
});

describe('shadow mode', () => {
  it('refuses nothing and sends no rate-limit header, but counts would_reject', async () => {
    gw = await startGateway(config());
    const u1 = await bearer('u1');
    const answers: Response[] = [];
    for (let i = 0; i < 5; i++) answers.push(await get('/trial/x', u1));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    for (const r of answers) {
      expect(r.headers.get('ratelimit')).toBeNull();
      expect(r.headers.get('ratelimit-policy')).toBeNull();
      expect(r.headers.get('x-ratelimit-remaining')).toBeNull();
      expect(r.headers.get('retry-after')).toBeNull();
    }
    const text = await metrics();
    expect(text).toContain('gatehouse_ratelimit_decisions_total{tier="route:trial",result="allowed"} 2');
    expect(text).toContain('gatehouse_ratelimit_decisions_total{tier="route:trial",result="would_reject"} 3');
    // the shadow limit used none of the tier's budget
    expect(await statuses('/a/x', u1, 5)).toEqual([200, 200, 200, 200, 429]);
  });
});
