import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

let upstream: Upstream;
let gw: TestGateway | undefined;
beforeAll(async () => {
  upstream = await startUpstream();
});
afterAll(() => upstream.close());
const prefixes: string[] = [];
/** a key prefix of this test's own, deleted after it */
const freshPrefix = () => {
  const p = `test:${randomUUID()}:`;
  prefixes.push(p);
  return p;
};
afterEach(async () => {
  await gw?.close();
  gw = undefined;
  const redis = new Redis(REDIS_URL);
  try {
    for (const p of prefixes.splice(0)) {
      const keys = await redis.keys(`${p}*`);
      if (keys.length > 0) await redis.del(...keys);
    }
  } finally {
    redis.disconnect();
  }
});

const config = (store: string, prefix: string, extra = '') => `
${store}
rateLimit:
  keyPrefix: "${prefix}"
  ${extra}
  tiers:
    anonymous: { limits: [{ requests: 5, per: 1m }, { requests: 100, per: 1h }] }
services:
  echo: { targets: ["${upstream.url}"] }
routes:
  - { name: limited, match: { path: /limited/** }, service: echo, rateLimit: ip }
  - { name: free, match: { path: /free/** }, service: echo }
`;

const stores = {
  memory: '',
  redis: `redis: { url: "${REDIS_URL}" }`,
};

describe.each(Object.entries(stores))('rate limiting with the %s store', (_name, store) => {
  it('admits exactly the limit out of a concurrent burst; the rest get 429 with Retry-After', async () => {
    gw = await startGateway(config(store, freshPrefix()));
    const results = await Promise.all(Array.from({ length: 30 }, () => fetch(`${gw!.url}/limited/x`)));
    const statuses = results.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(5);
    expect(statuses.filter((s) => s === 429)).toHaveLength(25);
    const refused = results.find((r) => r.status === 429)!;
    expect(refused.headers.get('content-type')).toBe('application/problem+json');
    const body = (await refused.json()) as { code: string };
    expect(body.code).toBe('rate_limited');
    expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(refused.headers.get('ratelimit-policy')).toBe('"1m";q=5;w=60, "1h";q=100;w=3600');
    expect(refused.headers.get('ratelimit')).toMatch(/^"1m";r=0;t=\d+$/);
    expect(refused.headers.get('x-ratelimit-remaining')).toBe('0');
    const ok = results.find((r) => r.status === 200)!;
    expect(ok.headers.get('x-ratelimit-limit')).toBe('5');
    expect(Number(ok.headers.get('x-ratelimit-remaining'))).toBeLessThan(5);
    await Promise.all(results.filter((r) => !r.bodyUsed).map((r) => r.body?.cancel()));
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
    expect(metrics).toContain('gatehouse_ratelimit_decisions_total{tier="anonymous",result="allowed"} 5');
    expect(metrics).toContain(
      'gatehouse_ratelimit_decisions_total{tier="anonymous",result="rate_limited"} 25',
    );
    expect(metrics).toMatch(/gatehouse_ratelimit_store_degraded\{store="(memory|redis)"\} 0/);
  });

  it('counts nothing for refused requests and leaves unlimited routes alone', async () => {
    gw = await startGateway(config(store, freshPrefix(), 'headers: legacy'));
    for (let i = 0; i < 5; i++) expect((await fetch(`${gw.url}/limited/a`)).status).toBe(200);
    for (let i = 0; i < 5; i++) expect((await fetch(`${gw.url}/limited/a`)).status).toBe(429);
    const free = await fetch(`${gw.url}/free/a`);
    expect(free.status).toBe(200);
    expect(free.headers.get('x-ratelimit-limit')).toBeNull();
    const last = await fetch(`${gw.url}/limited/a`);
    expect(last.headers.get('ratelimit')).toBeNull(); // headers: legacy
    expect(last.headers.get('x-ratelimit-remaining')).toBe('0');
  });
});

describe('the memory store, bounded by rateLimit.memory.maxEntries', () => {
  it('evicts the least recently used client past the bound; an evicted client starts afresh', async () => {
    gw = await startGateway(
      config('trustedProxies: [127.0.0.1]', freshPrefix(), 'memory: { maxEntries: 3 }'),
    );
    const from = async (ip: string) => {
      const res = await fetch(`${gw!.url}/limited/x`, { headers: { 'x-forwarded-for': ip } });
      await res.body?.cancel();
      return res.status;
    };
    const evictions = async () => {
      const text = await (await fetch(`${gw!.adminUrl}/metrics`)).text();
      return Number(/^gatehouse_ratelimit_memory_evictions_total\{store="memory"\} (\d+)$/m.exec(text)?.[1]);
    };
    // distinct /64 networks: IPv6 clients are counted by network (rateLimit.ipv6Prefix)
    const a = '2001:db8:a::1';
    const burst = [];
    for (let i = 0; i < 6; i++) burst.push(await from(a));
    expect(burst).toEqual([200, 200, 200, 200, 200, 429]);
    expect(await evictions()).toBe(0);
    // three other clients: the third one evicts a, the least recently used
    for (const ip of ['2001:db8:1::1', '2001:db8:2::1', '2001:db8:3::1']) expect(await from(ip)).toBe(200);
    expect(await evictions()).toBe(1);
    // a's counts are gone: a fresh window (and it evicts 2001:db8:1::/64 in turn)
    expect(await from(a)).toBe(200);
    expect(await evictions()).toBe(2);
    // a flood of addresses keeps evicting, never growing past the bound
    for (let i = 0; i < 40; i++) expect(await from(`2001:db8:${(0x100 + i).toString(16)}::1`)).toBe(200);
    expect(await evictions()).toBe(42);
  });
});

describe('the Redis store', () => {
  it('keeps all keys of one decision in one hash tag, expiring on their own', async () => {
    const prefix = freshPrefix();
    gw = await startGateway(config(stores.redis, prefix));
    expect((await fetch(`${gw.url}/limited/a`)).status).toBe(200);
    const redis = new Redis(REDIS_URL);
    try {
      const keys = await redis.keys(`${prefix}*`);
      expect(keys.sort()).toEqual([
        `${prefix}{rl:anonymous:ip:127.0.0.1}:1h`,
        `${prefix}{rl:anonymous:ip:127.0.0.1}:1m`,
      ]);
      for (const key of keys) expect(await redis.pttl(key)).toBeGreaterThan(0);
      await redis.del(...keys);
    } finally {
      redis.disconnect();
    }
  });
});
