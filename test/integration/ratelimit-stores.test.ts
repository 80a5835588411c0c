/**
 * The rate-limit store contract: the same tests against the memory store, the Redis store on
 * the shared Redis (unique key prefix per test) and the Redis store on a private Redis Cluster.
 * Redis-backed cases check that Redis really decided (keys exist, EVALSHA calls counted), so a
 * silent fallback could not make them pass.
 */
import { createHash, randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { describe as describeDecision, type Decision, type Plan } from '../../src/ratelimit/decision.js';
import { MemoryStore } from '../../src/ratelimit/memory-store.js';
import { RATE_LIMIT_BATCH_SCRIPT } from '../../src/ratelimit/redis-script.js';
import { RedisStore } from '../../src/ratelimit/redis-store.js';
import type { RateLimitStore } from '../../src/ratelimit/store.js';
import { periodEnd, periodOf } from '../../src/ratelimit/window.js';
import { connectRedis } from '../../src/stores/redis.js';
import { startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.js';
import { startRedisServer } from '../helpers/redis-server.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const TIMEOUT = 2000; // generous: a loaded test machine must not turn into store errors

const H = 3_600_000;
const DAY = 86_400_000;

/** What a test can ask of the Redis behind a store. */
type Inspector = {
  /** every node (one for a single Redis) */
  nodes: Redis[];
  /** keys matching `pattern` and the node each lives on */
  keys(pattern: string): Promise<Array<{ key: string; node: number }>>;
  /** EVALSHA + EVAL calls so far, over all nodes (INFO commandstats) */
  scriptCalls(): Promise<number>;
  /** Redis TIME in ms */
  time(): Promise<number>;
  /** the key's node, for PTTL/HGETALL */
  nodeOf(key: string): Promise<Redis>;
};

type Case = {
  name: string;
  store: RateLimitStore;
  redis: Inspector | null;
  /** the clock the store decides with */
  clock(): Promise<number>;
};

function commandCalls(info: string, command: string): number {
  const m = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info);
  return m ? Number(m[1]) : 0;
}

function inspector(nodes: Redis[]): Inspector {
  const keys = async (pattern: string) => {
    const found = await Promise.all(nodes.map((n) => n.keys(pattern)));
    return found.flatMap((ks, node) => ks.map((key) => ({ key, node })));
  };
  return {
    nodes,
    keys,
    async scriptCalls() {
      const infos = await Promise.all(nodes.map((n) => n.info('commandstats')));
      return infos.reduce((sum, i) => sum + commandCalls(i, 'evalsha') + commandCalls(i, 'eval'), 0);
    },
    async time() {
      const [s, us] = await (nodes[0] as Redis).time();
      return Number(s) * 1000 + Math.floor(Number(us) / 1000);
    },
    async nodeOf(key) {
      // on a Cluster, a node that does not serve the key's slot answers MOVED
      const has = await Promise.all(nodes.map((n) => n.exists(key).catch(() => 0)));
      const i = has.findIndex((n) => n === 1);
      if (i < 0) throw new Error(`no node holds ${key}`);
      return nodes[i] as Redis;
    },
  };
}

let cluster: RedisCluster;
const cases: Case[] = [];
const plainClients: Redis[] = [];

beforeAll(async () => {
  cluster = await startRedisCluster();
  const memory = new MemoryStore();
  cases.push({ name: 'memory', store: memory, redis: null, clock: () => Promise.resolve(Date.now()) });

  const single = new RedisStore(connectRedis({ url: REDIS_URL, timeout: TIMEOUT }));
  const singleAdmin = new Redis(REDIS_URL);
  plainClients.push(singleAdmin);
  const singleInspector = inspector([singleAdmin]);
  cases.push({ name: 'redis', store: single, redis: singleInspector, clock: () => singleInspector.time() });

  const clustered = new RedisStore(connectRedis({ cluster: [...cluster.urls], timeout: TIMEOUT }));
  const clusterAdmins = cluster.nodes.map((n) => n.client());
  plainClients.push(...clusterAdmins);
  const clusterInspector = inspector(clusterAdmins);
  cases.push({
    name: 'redis-cluster',
    store: clustered,
    redis: clusterInspector,
    clock: () => clusterInspector.time(),
  });
  for (const c of cases) expect(await c.store.ready(5000)).toBe(true);
}, 30_000);

afterAll(async () => {
  for (const c of cases) await c.store.close();
  for (const c of plainClients) c.disconnect();
  await cluster?.close();
});

/** Keys written on the shared Redis, deleted after each test. */
const written: string[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  const prefixes = written.splice(0);
  const shared = cases.find((c) => c.name === 'redis')?.redis;
  if (!shared) return;
  for (const prefix of prefixes) {
    const keys = await shared.keys(`${prefix}*`);
    if (keys.length > 0) await shared.nodes[0]?.del(...keys.map((k) => k.key));
  }
});

/** A fresh key as the limiter makes it: `<prefix>{rl:<tier>:<subject>}`. */
function freshKey(subject = 'ip:192.0.2.1', tier = 'test'): { prefix: string; key: string } {
  const prefix = `test:${randomUUID()}:`;
  written.push(prefix);
  return { prefix, key: `${prefix}{rl:${tier}:${subject}}` };
}

const plan = (limits: Array<[number, number, string]>, quota: Plan['quota'] = null): Plan => ({
  tier: 'test',
  limits: limits.map(([requests, windowMs, name]) => ({ requests, windowMs, name })),
  quota,
});

const outcomes = (ds: readonly Decision[]) => ds.map((d) => d.outcome);
const count = (ds: readonly Decision[], outcome: Decision['outcome']) =>
  ds.filter((d) => d.outcome === outcome).length;

/** Waits until `now` is at least `marginMs` before the end of the period, so a test cannot straddle it. */
async function awayFromEnd(c: Case, end: (now: number) => number, marginMs: number): Promise<void> {
  const now = await c.clock();
  const left = end(now) - now;
  if (left < marginMs) await new Promise((r) => setTimeout(r, left + 50));
}

/**
 * The decision the store must give after `admitted` requests on fresh keys (nothing in a previous
 * window), for its clock somewhere in [t0, t1]: what decision.ts makes of those counts at t0 and
 * at t1 bound every time-dependent field (reset, Retry-After); the rest must be equal.
 */
function expectDecision(
  actual: Decision,
  p: Plan,
  outcome: Decision['outcome'],
  admitted: number,
  t0: number,
  t1: number,
): void {
  const at = (now: number) =>
    describeDecision(
      p,
      outcome,
      p.limits.map((l) => ({ index: Math.floor(now / l.windowMs), current: admitted, previous: 0 })),
      p.quota ? { period: periodOf(p.quota.per, now), used: admitted } : null,
      now,
    );
  const [a, b] = [at(t0), at(t1)];
  const timeless = (d: Decision) => ({
    ...d,
    time: 0,
    retryAfterSec: 0,
    policies: d.policies.map((x) => ({ ...x, resetSec: 0 })),
  });
  expect(timeless(actual)).toEqual(timeless(a));
  const between = (v: number | undefined, x: number | undefined, y: number | undefined) => {
    expect(v).toBeGreaterThanOrEqual(Math.min(x ?? 0, y ?? 0));
    expect(v).toBeLessThanOrEqual(Math.max(x ?? 0, y ?? 0));
  };
  between(actual.retryAfterSec, a.retryAfterSec, b.retryAfterSec);
  actual.policies.forEach((x, i) => between(x.resetSec, a.policies[i]?.resetSec, b.policies[i]?.resetSec));
}

describe.each(['memory', 'redis', 'redis-cluster'])('rate-limit store contract: %s', (name) => {
  const get = (): Case => {
    const c = cases.find((x) => x.name === name);
    if (!c) throw new Error(`no store ${name}`);
    return c;
  };

  it('is the store it claims to be', () => {
    expect(get().store.kind).toBe(name);
  });

  it('admits exactly N out of a concurrent burst', async () => {
    const c = get();
    const { prefix, key } = freshKey();
    const p = plan([[10, H, '1h']]);
    const before = await c.redis?.scriptCalls();
    const decisions = await Promise.all(Array.from({ length: 50 }, () => c.store.consume(key, p)));
    expect(count(decisions, 'allowed')).toBe(10);
    expect(count(decisions, 'rate_limited')).toBe(40);
    for (const d of decisions.filter((x) => x.outcome === 'rate_limited')) {
      expect(d.retryAfterSec).toBeGreaterThanOrEqual(1);
      expect(d.policies[0]?.remaining).toBe(0);
    }
    // every remaining value from 9 down to 0 was handed out exactly once to the admitted ones
    const remaining = decisions.filter((d) => d.outcome === 'allowed').map((d) => d.policies[0]?.remaining);
    expect(remaining.sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    if (c.redis) {
      // Redis decided: the counter is there, and one script call for the burst (one batch)
      const keys = await c.redis.keys(`${prefix}*`);
      expect(keys.map((k) => k.key)).toEqual([`${key}:1h`]);
      expect(await (await c.redis.nodeOf(`${key}:1h`)).hget(`${key}:1h`, 'c')).toBe('10');
      const calls = (await c.redis.scriptCalls()) - (before ?? 0);
      if (c.name === 'redis-cluster') expect(calls).toBe(1);
      else expect(calls).toBeGreaterThanOrEqual(1); // the shared Redis serves other tests too
      expect((c.store as RedisStore).scriptCalls).toBeGreaterThan(0);
    }
  });

  it('checks several limits in one call: the tightest refuses, all count', async () => {
    const c = get();
    const { key } = freshKey();
    const p = plan([
      [100, H, '1h'],
      [3, DAY, '1d'],
    ]);
    const ds: Decision[] = [];
    for (let i = 0; i < 5; i++) ds.push(await c.store.consume(key, p));
    expect(outcomes(ds)).toEqual(['allowed', 'allowed', 'allowed', 'rate_limited', 'rate_limited']);
    expect(ds.map((d) => d.policies.map((x) => x.remaining))).toEqual([
      [99, 2],
      [98, 1],
      [97, 0],
      [97, 0],
      [97, 0],
    ]);
    expect(ds.map((d) => d.tightest)).toEqual([1, 1, 1, 1, 1]);
    const refused = ds[4] as Decision;
    expect(refused.policies.map((x) => [x.name, x.quota, x.windowSec])).toEqual([
      ['1h', 100, 3600],
      ['1d', 3, 86400],
    ]);
    // the 1h limit would admit: Retry-After comes from the 1d window (a third into the next day)
    expect(refused.retryAfterSec).toBeGreaterThanOrEqual(DAY / 3 / 1000);
    // the other way round: the hourly limit is the tight one
    const { key: key2 } = freshKey();
    const p2 = plan([
      [2, H, '1h'],
      [100, DAY, '1d'],
    ]);
    const ds2: Decision[] = [];
    for (let i = 0; i < 3; i++) ds2.push(await c.store.consume(key2, p2));
    expect(outcomes(ds2)).toEqual(['allowed', 'allowed', 'rate_limited']);
    expect(ds2[2]?.policies.map((x) => x.remaining)).toEqual([0, 98]);
    expect(ds2[2]?.tightest).toBe(0);
  });

  it('gives remaining and reset from the store clock, the same for every store', async () => {
    const c = get();
    const { key } = freshKey();
    await awayFromEnd(c, (now) => (Math.floor(now / H) + 1) * H, 5000);
    const p = plan([
      [3, H, '1h'],
      [10, DAY, '1d'],
    ]);
    const t0 = await c.clock();
    const ds: Decision[] = [];
    for (let i = 0; i < 4; i++) ds.push(await c.store.consume(key, p));
    const t1 = await c.clock();
    expect(outcomes(ds)).toEqual(['allowed', 'allowed', 'allowed', 'rate_limited']);
    expect(ds.map((d) => d.policies.map((x) => x.remaining))).toEqual([
      [2, 9],
      [1, 8],
      [0, 7],
      [0, 7],
    ]);
    expect(ds.map((d) => d.tightest)).toEqual([0, 0, 0, 0]);
    ds.forEach((d, i) => expectDecision(d, p, d.outcome, Math.min(i + 1, 3), t0, t1));
    // refused with 3 of 3 used: in the next window after a third of it, 3·(1 − f) + 0 + 1 ≤ 3
    const refused = ds[3] as Decision;
    const nextWindow = (t: number) => (Math.floor(t / H) + 1) * H;
    expect(refused.retryAfterSec).toBeGreaterThanOrEqual(Math.ceil((nextWindow(t1) + H / 3 - t1) / 1000));
    expect(refused.retryAfterSec).toBeLessThanOrEqual(Math.ceil((nextWindow(t0) + H / 3 - t0) / 1000));
  });

  it('refused requests count nothing', async () => {
    const c = get();
    const { key } = freshKey();
    const tight = plan([[5, H, '1h']]);
    const ds: Decision[] = [];
    for (let i = 0; i < 25; i++) ds.push(await c.store.consume(key, tight));
    expect(count(ds, 'allowed')).toBe(5);
    // the same counter under a limit of 10: exactly 5 more, so the 20 refusals counted nothing
    const looser = plan([[10, H, '1h']]);
    const more = await Promise.all(Array.from({ length: 20 }, () => c.store.consume(key, looser)));
    expect(count(more, 'allowed')).toBe(5);
  });

  it.each(['day', 'month'] as const)(
    'admits up to the %s quota, then quota_exceeded until the period ends',
    async (per) => {
      const c = get();
      const { prefix, key } = freshKey();
      await awayFromEnd(c, (now) => periodEnd(per, now), 5000);
      const p = plan([[1000, H, '1h']], { requests: 5, per });
      const t0 = await c.clock();
      const ds: Decision[] = [];
      for (let i = 0; i < 8; i++) ds.push(await c.store.consume(key, p));
      const t1 = await c.clock();
      expect(outcomes(ds)).toEqual([...Array(5).fill('allowed'), ...Array(3).fill('quota_exceeded')]);
      expect(ds.map((d) => d.policies[1]?.remaining)).toEqual([4, 3, 2, 1, 0, 0, 0, 0]);
      const refused = ds[7] as Decision;
      const q = refused.policies[1];
      expect(q?.name).toBe(per);
      expect(q?.quota).toBe(5);
      const end = periodEnd(per, t0);
      const start =
        per === 'day' ? end - DAY : Date.UTC(new Date(t0).getUTCFullYear(), new Date(t0).getUTCMonth());
      expect(q?.windowSec).toBe((end - start) / 1000);
      expect(refused.tightest).toBe(1);
      // Retry-After: to the end of the calendar period (UTC), by the store's clock
      expect(refused.retryAfterSec).toBeGreaterThanOrEqual(Math.ceil((end - t1) / 1000));
      expect(refused.retryAfterSec).toBeLessThanOrEqual(Math.ceil((end - t0) / 1000));
      expect(q?.resetSec).toBe(refused.retryAfterSec);
      ds.forEach((d, i) => expectDecision(d, p, d.outcome, Math.min(i + 1, 5), t0, t1));
      // the refused requests counted nothing, on the quota or on the limit
      const roomier = plan([[1000, H, '1h']], { requests: 7, per });
      const more: Decision[] = [];
      for (let i = 0; i < 4; i++) more.push(await c.store.consume(key, roomier));
      expect(outcomes(more)).toEqual(['allowed', 'allowed', 'quota_exceeded', 'quota_exceeded']);
      expect(more[1]?.policies[0]?.remaining).toBe(1000 - 7);
      if (c.redis) {
        const keys = (await c.redis.keys(`${prefix}*`)).map((k) => k.key).sort();
        expect(keys).toEqual([`${key}:1h`, `${key}:q:${per}`]);
        const node = await c.redis.nodeOf(`${key}:q:${per}`);
        expect(await node.hget(`${key}:q:${per}`, 'n')).toBe('7');
      }
    },
  );

  it('keeps all keys of one decision under one hash tag, each with a TTL', async (ctx) => {
    const c = get();
    if (!c.redis) return ctx.skip();
    const { prefix, key } = freshKey('ip:198.51.100.7');
    const p = plan(
      [
        [50, 1000, '1s'],
        [100, 60_000, '1m'],
        [1000, H, '1h'],
      ],
      { requests: 100, per: 'month' },
    );
    expect((await c.store.consume(key, p)).outcome).toBe('allowed');
    const keys = await c.redis.keys(`${prefix}*`);
    expect(keys.map((k) => k.key).sort()).toEqual(
      [`${key}:1s`, `${key}:1m`, `${key}:1h`, `${key}:q:month`].sort(),
    );
    for (const { key: k } of keys) expect(k).toContain('{rl:test:ip:198.51.100.7}');
    expect(new Set(keys.map((k) => k.node)).size).toBe(1);
    const node = c.redis.nodes[keys[0]?.node ?? 0] as Redis;
    const slots = await Promise.all(keys.map((k) => node.cluster('KEYSLOT', k.key).catch(() => null)));
    if (c.name === 'redis-cluster') expect(new Set(slots).size).toBe(1);
    const ttl = Object.fromEntries(await Promise.all(keys.map(async (k) => [k.key, await node.pttl(k.key)])));
    expect(ttl[`${key}:1s`]).toBeGreaterThan(0);
    expect(ttl[`${key}:1s`]).toBeLessThanOrEqual(2000);
    expect(ttl[`${key}:1m`]).toBeGreaterThan(60_000);
    expect(ttl[`${key}:1m`]).toBeLessThanOrEqual(120_000);
    expect(ttl[`${key}:1h`]).toBeGreaterThan(H);
    expect(ttl[`${key}:1h`]).toBeLessThanOrEqual(2 * H);
    expect(ttl[`${key}:q:month`]).toBeGreaterThan(31 * DAY);
    expect(ttl[`${key}:q:month`]).toBeLessThanOrEqual(32 * DAY);
  });

  it('takes its time from Redis TIME, not from the gateway clock', async (ctx) => {
    const c = get();
    if (!c.redis) return ctx.skip(); // the memory store is the gateway clock
    const { key } = freshKey();
    await awayFromEnd(c, (now) => (Math.floor(now / H) + 1) * H, 5000);
    await awayFromEnd(c, (now) => periodEnd('day', now), 5000);
    // This process's clock is 37 minutes off; Redis's is right.
    const realNow = Date.now.bind(Date);
    vi.spyOn(Date, 'now').mockImplementation(() => realNow() + 37 * 60_000);
    const p = plan([[1, H, '1h']], { requests: 10, per: 'day' });
    const t0 = await c.clock();
    const first = await c.store.consume(key, p);
    const second = await c.store.consume(key, p);
    const t1 = await c.clock();
    expect(first.outcome).toBe('allowed');
    expect(second.outcome).toBe('rate_limited');
    expectDecision(first, p, 'allowed', 1, t0, t1);
    expectDecision(second, p, 'rate_limited', 1, t0, t1);
    // 1 of 1 used: the next window must pass entirely before p·(1 − f) + 1 ≤ 1
    const nextWindow = (t: number) => (Math.floor(t / H) + 1) * H;
    expect(second.retryAfterSec).toBeGreaterThanOrEqual(Math.ceil((nextWindow(t1) + H - t1) / 1000));
    expect(second.retryAfterSec).toBeLessThanOrEqual(Math.ceil((nextWindow(t0) + H - t0) / 1000));
    // and the quota's reset is the end of the UTC day by Redis's clock
    expect(first.policies[1]?.resetSec).toBeGreaterThanOrEqual(Math.ceil((periodEnd('day', t1) - t1) / 1000));
    expect(first.policies[1]?.resetSec).toBeLessThanOrEqual(Math.ceil((periodEnd('day', t0) - t0) / 1000));
  });
});

describe('NOSCRIPT: the script cache flushed under a running store', () => {
  const p = plan([[3, H, '1h']]);

  async function flushAndConsume(store: RedisStore, nodes: Redis[], keys: string[]): Promise<void> {
    for (const key of keys) expect((await store.consume(key, p)).outcome).toBe('allowed');
    const noscript = async () => {
      const infos = await Promise.all(nodes.map((n) => n.info('errorstats')));
      return infos.reduce((sum, i) => sum + Number(/^errorstat_NOSCRIPT:count=(\d+)/m.exec(i)?.[1] ?? 0), 0);
    };
    const before = await noscript();
    await Promise.all(nodes.map((n) => n.script('FLUSH')));
    // every key once more, one batch each (a batch of more keys is another script command,
    // sent as EVAL on its first use): each node answers NOSCRIPT once, then loads it again
    const after: Decision[] = [];
    for (const key of keys) after.push(await store.consume(key, p));
    expect(after.map((d) => d.policies[0]?.remaining)).toEqual(keys.map(() => 1));
    expect(await noscript()).toBeGreaterThan(before);
    const again = await Promise.all(keys.map((key) => store.consume(key, p)));
    expect(again.map((d) => d.policies[0]?.remaining)).toEqual(keys.map(() => 0));
    const sha = createHash('sha1').update(RATE_LIMIT_BATCH_SCRIPT).digest('hex');
    const loaded = await Promise.all(nodes.map((n) => n.script('EXISTS', sha) as Promise<number[]>));
    expect(loaded.flat()).toEqual(nodes.map(() => 1));
  }

  it('on a private single Redis', async () => {
    const node = await startRedisServer();
    const store = new RedisStore(connectRedis({ url: node.url, timeout: TIMEOUT }));
    const admin = node.client();
    try {
      expect(await store.ready(5000)).toBe(true);
      await flushAndConsume(store, [admin], ['{rl:t:a}', '{rl:t:b}']);
    } finally {
      admin.disconnect();
      await store.close();
      await node.close();
    }
  });

  it('on every node of the private cluster', async () => {
    const store = new RedisStore(connectRedis({ cluster: [...cluster.urls], timeout: TIMEOUT }));
    const admins = cluster.nodes.map((n) => n.client());
    try {
      expect(await store.ready(5000)).toBe(true);
      // subjects on every node
      const keys: string[] = [];
      const covered = new Set<number>();
      const owner = await slotOwners(admins[0] as Redis);
      for (let i = 0; covered.size < admins.length && i < 1000; i++) {
        const key = `noscript:${randomUUID()}:{rl:t:s${i}}`;
        const node = owner(Number(await (admins[0] as Redis).cluster('KEYSLOT', key)));
        if (!covered.has(node)) {
          covered.add(node);
          keys.push(key);
        }
      }
      expect(covered.size).toBe(admins.length);
      await flushAndConsume(store, admins, keys);
    } finally {
      for (const a of admins) a.disconnect();
      await store.close();
    }
  });

  /** slot → index of the node (in `cluster.nodes` order) serving it */
  async function slotOwners(admin: Redis): Promise<(slot: number) => number> {
    const slots = (await admin.cluster('SLOTS')) as unknown as Array<
      [number, number, [string, number, ...unknown[]]]
    >;
    const ports = cluster.nodes.map((n) => n.port);
    return (slot) => {
      const range = slots.find(([lo, hi]) => slot >= lo && slot <= hi);
      if (!range) throw new Error(`slot ${slot} not served`);
      return ports.indexOf(range[2][1]);
    };
  }
});
