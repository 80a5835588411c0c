/**
 * The stores' read-only `peek` and `reset` (the admin API's usage endpoints): on one Redis node,
 * on a Redis Cluster (subjects on every master: one script per read, routed by the hash tag), and
 * in memory, they read what `consume` counted without counting, and forget it.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Plan } from '../../src/ratelimit/decision.js';
import { MemoryStore } from '../../src/ratelimit/memory-store.js';
import { RedisStore } from '../../src/ratelimit/redis-store.js';
import type { RateLimitStore } from '../../src/ratelimit/store.js';
import { connectRedis } from '../../src/stores/redis.js';
import { startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.js';

const plan: Plan = {
  tier: 't',
  limits: [
    { requests: 10, windowMs: 60_000, name: '1m' },
    { requests: 100, windowMs: 3_600_000, name: '1h' },
  ],
  quota: { requests: 1000, per: 'day' },
};

let cluster: RedisCluster;
let admins: Redis[];
beforeAll(async () => {
  cluster = await startRedisCluster();
  admins = cluster.nodes.map((n) => n.client());
}, 30_000);
afterAll(async () => {
  for (const a of admins ?? []) a.disconnect();
  await cluster?.close();
});

async function exercise(store: RateLimitStore, keys: string[]): Promise<void> {
  for (const [i, key] of keys.entries()) {
    const empty = await store.peek!(key, plan);
    expect(empty.limits).toEqual([undefined, undefined]);
    expect(empty.quota).toBeUndefined();
    for (let n = 0; n <= i; n++) await store.consume(key, plan);
    const seen = await store.peek!(key, plan);
    expect(seen.limits.map((l) => l?.current)).toEqual([i + 1, i + 1]);
    expect(seen.quota?.used).toBe(i + 1);
    // a peek counts nothing
    expect((await store.peek!(key, plan)).limits[0]?.current).toBe(i + 1);
  }
  for (const key of keys) await store.reset!(key, plan);
  for (const key of keys) expect((await store.peek!(key, plan)).limits).toEqual([undefined, undefined]);
  const after = await store.consume(keys[0] as string, plan);
  expect(after.policies[0]?.remaining).toBe(9);
}

describe('peek and reset', () => {
  it('memory', async () => {
    const store = new MemoryStore();
    await exercise(store, ['a', 'b', 'c']);
    await store.close();
  });

  it('one Redis node', async () => {
    const client = connectRedis({ url: 'redis://127.0.0.1:6379', timeout: 2000 });
    const store = new RedisStore(client);
    try {
      await store.ready(2000);
      const prefix = `gh-peek-${randomUUID()}:`;
      const keys = ['a', 'b'].map((s) => `${prefix}{rl:t:c:${s}}`);
      await exercise(store, keys);
      // the reset left nothing of "b" (the last consume counted "a" again)
      expect((await client.keys(`${prefix}*`)).sort()).toEqual(
        [`${keys[0]}:1h`, `${keys[0]}:1m`, `${keys[0]}:q:day`].sort(),
      );
    } finally {
      await store.close();
    }
  });

  it('a Redis Cluster, subjects on every master', async () => {
    const client = connectRedis({ cluster: cluster.urls, timeout: 2000 });
    const store = new RedisStore(client);
    try {
      expect(await store.ready(10_000)).toBe(true);
      const prefix = `gh-peek-${randomUUID()}:`;
      const ports = new Set<number>();
      const keys: string[] = [];
      for (let i = 0; ports.size < cluster.nodes.length && i < 1000; i++) {
        const key = `${prefix}{rl:t:c:s${i}}`;
        const port = await cluster.masterOf(Number(await (admins[0] as Redis).cluster('KEYSLOT', key)));
        if (!ports.has(port)) {
          ports.add(port);
          keys.push(key);
        }
      }
      expect(keys).toHaveLength(cluster.nodes.length);
      await exercise(store, keys);
    } finally {
      await store.close();
    }
  });
});
