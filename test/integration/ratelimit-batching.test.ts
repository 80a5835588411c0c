/**
 * The Redis store's batches (one script call for the decisions of one event-loop turn): a batch
 * decides exactly as the same calls made one by one, in order, on the shared Redis with a key
 * prefix of its own; and a turn's decisions really went out together (script calls counted).
 */
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Decision, Plan } from '../../src/ratelimit/decision.js';
import { RedisStore } from '../../src/ratelimit/redis-store.js';
import { connectRedis } from '../../src/stores/redis.js';
import { startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const H = 3_600_000;

const planArb: fc.Arbitrary<Plan> = fc.record({
  tier: fc.constant('t'),
  limits: fc
    .uniqueArray(
      fc.record({
        requests: fc.integer({ min: 1, max: 6 }),
        windowMs: fc.constantFrom(H, 2 * H),
      }),
      { minLength: 1, maxLength: 2, selector: (l) => l.windowMs },
    )
    .map((ls) => ls.map((l) => ({ ...l, name: `${l.windowMs / H}h` }))),
  quota: fc.option(
    fc.record({
      requests: fc.integer({ min: 1, max: 8 }),
      per: fc.constantFrom<'day' | 'month'>('day', 'month'),
    }),
    {
      nil: null,
    },
  ),
}) as fc.Arbitrary<Plan>;

/** what a decision says that does not depend on the instant it was taken */
function view(d: Decision) {
  return { outcome: d.outcome, remaining: d.policies.map((p) => [p.name, p.remaining]) };
}

/** (the hour window the decision fell in): both runs must be compared within one window */
const hour = (d: Decision) => Math.floor(d.time / H);

describe('ratelimit Redis store batches', () => {
  const prefix = `test:batch:${randomUUID()}:`;
  const client = connectRedis({ url: REDIS_URL, timeout: 5000 });
  beforeAll(async () => {
    expect(await new RedisStore(client).ready(5000)).toBe(true);
  });

  afterAll(async () => {
    const keys = await client.keys(`${prefix}*`);
    if (keys.length > 0) await client.del(...keys);
    client.disconnect();
  });

  it('decides a batch as the same calls made one by one, in order (property)', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(planArb, { minLength: 1, maxLength: 4 }),
        fc.array(fc.nat(), { minLength: 1, maxLength: 40 }),
        fc.integer({ min: 1, max: 16 }),
        async (plans, picks, maxBatch) => {
          run++;
          const calls = picks.map((p) => p % plans.length);
          const batched = new RedisStore(client, { maxBatch });
          const oneByOne = new RedisStore(client);
          const key = (side: string, s: number) => `${prefix}${run}:${side}:{rl:t:s${s}}`;
          // one turn: every call is made before any is sent
          const b = await Promise.all(calls.map((s) => batched.consume(key('b', s), plans[s] as Plan)));
          const o: Decision[] = [];
          for (const s of calls) o.push(await oneByOne.consume(key('o', s), plans[s] as Plan));
          expect(batched.scriptCalls).toBe(Math.ceil(calls.length / maxBatch));
          expect(oneByOne.scriptCalls).toBe(calls.length);
          const times = [...b, ...o].map(hour);
          // an hour boundary between the runs changes the windows: not comparable (rare)
          fc.pre(times.every((t) => t === times[0]));
          expect(b.map(view)).toEqual(o.map(view));
          // what stays counted is the same too (a refused decision counted nothing)
          for (let s = 0; s < plans.length; s++) {
            const [pb, po] = await Promise.all([
              batched.peek(key('b', s), plans[s] as Plan),
              oneByOne.peek(key('o', s), plans[s] as Plan),
            ]);
            expect(pb.limits).toEqual(po.limits);
            expect(pb.quota).toEqual(po.quota);
          }
        },
      ),
      { numRuns: 60 },
    );
  }, 60_000);

  it('never admits more than the limit from one burst on one subject', async () => {
    const store = new RedisStore(client);
    const plan: Plan = { tier: 't', limits: [{ name: '1h', requests: 50, windowMs: H }], quota: null };
    const k = `${prefix}burst:{rl:t:one}`;
    const decisions = await Promise.all(Array.from({ length: 300 }, () => store.consume(k, plan)));
    expect(decisions.filter((d) => d.outcome === 'allowed')).toHaveLength(50);
    // in order: the first 50 of the turn are the admitted ones
    expect(decisions.slice(0, 50).every((d) => d.outcome === 'allowed')).toBe(true);
    expect(store.scriptCalls).toBe(Math.ceil(300 / 128));
    expect((await store.peek(k, plan)).limits[0]?.current).toBe(50);
  });

  it('fails every decision of a batch that fails', async () => {
    const store = new RedisStore(client);
    const plan: Plan = { tier: 't', limits: [{ name: '1h', requests: 5, windowMs: H }], quota: null };
    const k = `${prefix}wrongtype:{rl:t:x}`;
    // a key of the wrong type makes the script fail: the whole batch with it
    await client.set(`${k}:1h`, 'not a hash');
    const results = await Promise.allSettled([
      store.consume(k, plan),
      store.consume(`${prefix}fine:{rl:t:y}`, plan),
    ]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(store.scriptCalls).toBe(1);
  });
});

describe('ratelimit Redis store batches on a Cluster', () => {
  let cluster: RedisCluster;
  beforeAll(async () => {
    cluster = await startRedisCluster();
  }, 60_000);
  afterAll(async () => {
    await cluster?.close();
  });

  it('batches per slot: one call per slot, each subject decided exactly', async () => {
    const client = connectRedis({ cluster: cluster.urls, timeout: 5000 });
    try {
      const store = new RedisStore(client);
      expect(await store.ready(10_000)).toBe(true);
      const plan: Plan = { tier: 't', limits: [{ name: '1h', requests: 3, windowMs: H }], quota: null };
      const subjects = ['a', 'b', 'c', 'd', 'e', 'f'];
      const calls = subjects.flatMap((s) => Array.from({ length: 5 }, () => `batch:{rl:t:${s}}`));
      const decisions = await Promise.all(calls.map((k) => store.consume(k, plan)));
      for (const s of subjects) {
        const mine = decisions.filter((_, i) => calls[i] === `batch:{rl:t:${s}}`);
        expect(mine.map((d) => d.outcome)).toEqual([
          'allowed',
          'allowed',
          'allowed',
          'rate_limited',
          'rate_limited',
        ]);
      }
      // one call per subject (each subject's keys are one slot)
      expect(store.scriptCalls).toBe(subjects.length);
    } finally {
      client.disconnect();
    }
  }, 60_000);
});
