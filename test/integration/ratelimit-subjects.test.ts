/**
 * Who is counted, through the real gateway on a private Redis: consumers whose ids differ only
 * by escaping keep separate buckets; IPv6 clients are counted by network (`ipv6Prefix`), IPv4-
 * mapped addresses as IPv4; `rateLimit.unauthenticated` limits failed authentications per
 * address with at most one round trip per request.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
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
const config = (extra: string) => `
trustedProxies: [127.0.0.1]
redis: { url: "${redis.url}", timeout: 1s }
auth:
  jwt: { algorithms: [RS256], issuer: "${ISSUER}", audience: ${AUDIENCE}, publicKeys: ["${pem}"] }
rateLimit:
  keyPrefix: "t${++n}:"
  onStoreError: closed
${extra}
  tiers:
    anonymous: { limits: [{ requests: 3, per: 1m }] }
    free: { limits: [{ requests: 2, per: 1m }] }
services:
  echo: { targets: ["${upstream.url}"] }
routes:
  - { name: byip, match: { path: /ip/** }, service: echo, rateLimit: ip }
  - { name: orders, match: { path: /orders/** }, service: echo, auth: [jwt], rateLimit: tier }
`;

async function get(path: string, headers: Record<string, string> = {}): Promise<Response> {
  const res = await fetch(`${gw!.url}${path}`, { headers });
  await res.arrayBuffer();
  return res;
}
const from = (ip: string, extra: Record<string, string> = {}) => ({ 'x-forwarded-for': ip, ...extra });
async function statuses(path: string, headers: Record<string, string>, count: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push((await get(path, headers)).status);
  return out;
}

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

describe('consumers', () => {
  it('whose ids differ only by escaping have buckets of their own', async () => {
    gw = await startGateway(config(''));
    const braces = { authorization: `Bearer ${await sign(key, { sub: 'a{b' })}` };
    const escaped = { authorization: `Bearer ${await sign(key, { sub: 'a%7bb' })}` };
    expect(await statuses('/orders/1', braces, 2)).toEqual([200, 200]);
    // the old escaping made both `a%7bb`: this one found the bucket used up
    expect(await statuses('/orders/1', escaped, 3)).toEqual([200, 200, 429]);
    expect(await statuses('/orders/1', braces, 1)).toEqual([429]);
    const c = redis.client();
    try {
      const keys = (await c.keys(`t${n}:*`)).sort();
      expect(keys).toEqual([`t${n}:{rl:free:c:a%257bb}:1m`, `t${n}:{rl:free:c:a%7bb}:1m`]);
    } finally {
      c.disconnect();
    }
  });
});

describe('IPv6 clients', () => {
  it('are counted by their /64 by default; IPv4-mapped addresses as IPv4', async () => {
    gw = await startGateway(config(''));
    // three addresses of one /64 share the anonymous tier's 3
    expect((await get('/ip/x', from('2001:db8:0:1::a'))).status).toBe(200);
    expect((await get('/ip/x', from('2001:db8:0:1:ffff:ffff:ffff:ffff'))).status).toBe(200);
    expect((await get('/ip/x', from('2001:DB8:0:1:0:0:0:b'))).status).toBe(200);
    expect((await get('/ip/x', from('2001:db8:0:1::c'))).status).toBe(429);
    // the next /64 is another client
    expect((await get('/ip/x', from('2001:db8:0:2::a'))).status).toBe(200);
    // ::ffff:192.0.2.7 is 192.0.2.7
    expect(await statuses('/ip/x', from('::ffff:192.0.2.7'), 2)).toEqual([200, 200]);
    expect(await statuses('/ip/x', from('192.0.2.7'), 2)).toEqual([200, 429]);
    const c = redis.client();
    try {
      expect((await c.keys(`t${n}:*`)).sort()).toEqual([
        `t${n}:{rl:anonymous:ip:192.0.2.7}:1m`,
        `t${n}:{rl:anonymous:ip:2001:db8:0:1::/64}:1m`,
        `t${n}:{rl:anonymous:ip:2001:db8:0:2::/64}:1m`,
      ]);
    } finally {
      c.disconnect();
    }
  });

  it('by address with ipv6Prefix: 128, by a wider network with 48', async () => {
    gw = await startGateway(config('  ipv6Prefix: 128'));
    expect(await statuses('/ip/x', from('2001:db8:0:1::a'), 3)).toEqual([200, 200, 200]);
    expect((await get('/ip/x', from('2001:db8:0:1::b'))).status).toBe(200);
    await gw.close();
    gw = await startGateway(config('  ipv6Prefix: 48'));
    expect((await get('/ip/x', from('2001:db8:0:1::a'))).status).toBe(200);
    expect((await get('/ip/x', from('2001:db8:0:2::a'))).status).toBe(200);
    expect((await get('/ip/x', from('2001:db8:0:ffff::a'))).status).toBe(200);
    expect((await get('/ip/x', from('2001:db8:0:3::a'))).status).toBe(429);
  });
});

describe('rateLimit.unauthenticated', () => {
  const limit = `  unauthenticated: { limits: [{ requests: 3, per: 1m }] }`;

  it('limits failed authentications per address; then refuses it before checking credentials', async () => {
    gw = await startGateway(config(limit));
    const bad = { authorization: 'Bearer not-a-token' };
    const good = { authorization: `Bearer ${await sign(key, { sub: 'u1' })}` };
    // three failures are answered 401, the fourth is refused by the limit
    expect(await statuses('/orders/1', from('198.51.100.1', bad), 3)).toEqual([401, 401, 401]);
    const refused = await get('/orders/1', from('198.51.100.1', bad));
    expect(refused.status).toBe(429);
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(refused.headers.get('ratelimit-policy')).toBe('"1m";q=3;w=60');
    // no credentials at all count as well; and from now on even a valid token is refused
    // from that address, before any verification, without a round trip
    const calls = await scriptCalls();
    expect((await get('/orders/1', from('198.51.100.1'))).status).toBe(429);
    const blocked = await get('/orders/1', from('198.51.100.1', good));
    expect(blocked.status).toBe(429);
    expect(await blocked.headers.get('content-type')).toBe('application/problem+json');
    expect(await scriptCalls()).toBe(calls);
    // another address is not affected
    expect((await get('/orders/1', from('198.51.100.2', good))).status).toBe(200);
  });

  it('costs an authenticated request no round trip; a failed one exactly one', async () => {
    gw = await startGateway(config(limit));
    const good = { authorization: `Bearer ${await sign(key, { sub: 'u2' })}` };
    let calls = await scriptCalls();
    expect((await get('/orders/1', from('198.51.100.3', good))).status).toBe(200);
    expect((await scriptCalls()) - calls).toBe(1); // the tier's limit only
    calls = await scriptCalls();
    expect((await get('/orders/1', from('198.51.100.3', { authorization: 'Bearer x' }))).status).toBe(401);
    expect((await scriptCalls()) - calls).toBe(1); // the failure, counted
    // successes do not count towards the failures: still 2 failures left
    expect(await statuses('/orders/1', from('198.51.100.3', good), 1)).toEqual([200]);
    expect(await statuses('/orders/1', from('198.51.100.3'), 3)).toEqual([401, 401, 429]);
  });

  it('is refused by validate without limits or quota', async () => {
    await expect(startGateway(config('  unauthenticated: {}'))).rejects.toThrow(
      /rateLimit\.unauthenticated.*has neither limits nor a quota/,
    );
  });
});
