/**
 * The Lua script (redis-script.ts) against window.ts/decision.ts, on the real Redis at REDIS_URL.
 *
 * The script takes its time from Redis, so the test cannot choose it; instead every case writes
 * a chosen state into Redis, runs the script once, and replays the same state in TypeScript at the
 * time the script reports (its reply carries `now`): outcome, window indexes, counts after the
 * request and the stored hashes must all agree. Windows of a few milliseconds make the script's
 * time land anywhere in them, so the boundary cases (estimate + 1 exactly L, the first and last
 * millisecond of a window, rolled and skipped windows) come up again and again.
 *
 * month_index, the Lua calendar arithmetic of monthly quotas, is evaluated on its own (the very
 * text the script includes) for month edges from 1970 to 2400 and random times, against
 * getUTCFullYear()·12 + getUTCMonth().
 */
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { admitted, type Outcome, type Plan } from '../../src/ratelimit/decision.js';
import { MONTH_INDEX_LUA, RATE_LIMIT_BATCH_SCRIPT, REFUND_SCRIPT } from '../../src/ratelimit/redis-script.js';
import {
  periodOf,
  rolled,
  rolledQuota,
  type LimitState,
  type QuotaPeriod,
  type QuotaState,
} from '../../src/ratelimit/window.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `test:rl-lua:${randomUUID()}:`;
const OUTCOMES: readonly Outcome[] = ['allowed', 'rate_limited', 'quota_exceeded'];

type ScriptClient = Redis & {
  ghRateLimitBatchTest(...args: Array<string | number>): Promise<number[]>;
  /** one decision alone: a batch of one, its reply as [outcome, now, fields...] (or [3, now]) */
  ghRateLimitTest(...args: Array<string | number>): Promise<number[]>;
  ghRefundTest(...args: Array<string | number>): Promise<number>;
};
let redis: ScriptClient;

beforeAll(() => {
  const client = new Redis(REDIS_URL, { maxRetriesPerRequest: 1, lazyConnect: false });
  client.defineCommand('ghRateLimitBatchTest', { lua: RATE_LIMIT_BATCH_SCRIPT });
  client.defineCommand('ghRefundTest', { lua: REFUND_SCRIPT });
  redis = client as ScriptClient;
  // (numKeys, keys..., n, windowMs/requests per limit, quota requests, period[, deadline])
  redis.ghRateLimitTest = async (...args) => {
    const numKeys = Number(args[0]);
    const keys = args.slice(1, numKeys + 1);
    const argv = args.slice(numKeys + 1);
    const n = Number(argv[0]);
    const deadline = argv[2 * n + 3] ?? 0;
    const reply = await redis.ghRateLimitBatchTest(
      numKeys,
      ...keys,
      1,
      deadline,
      ...argv.slice(0, 2 * n + 3),
    );
    return reply[0] === 3 ? reply : [reply[2] as number, reply[1] as number, ...reply.slice(3)];
  };
});

afterAll(async () => {
  // only this file's keys (each case deletes its own; this catches a failed case's)
  const leftover = await redis.keys(`${PREFIX}*`);
  if (leftover.length > 0) await redis.del(...leftover);
  redis.disconnect();
});

describe('month_index (Lua) agrees with JavaScript’s UTC calendar', () => {
  const program = `${MONTH_INDEX_LUA}
local out = {}
for i = 1, #ARGV do out[i] = month_index(tonumber(ARGV[i])) end
return out`;
  const js = (ms: number) => new Date(ms).getUTCFullYear() * 12 + new Date(ms).getUTCMonth();

  it('on both sides of every month edge, 1970–2400, and on every leap day', async () => {
    const times: number[] = [];
    for (let y = 1970; y <= 2400; y++) {
      for (let m = 0; m < 12; m++) {
        const edge = Date.UTC(y, m, 1);
        if (edge > 0) times.push(edge - 1);
        times.push(edge, edge + 1);
      }
      // Feb 29 of leap years (2000 and 2400 included; 2100, 2200, 2300 have none)
      if (new Date(Date.UTC(y, 1, 29)).getUTCMonth() === 1) times.push(Date.UTC(y, 1, 29, 12));
    }
    expect(times).toContain(Date.UTC(2028, 1, 29, 12));
    expect(times).not.toContain(Date.UTC(2100, 1, 29, 12));
    for (let i = 0; i < times.length; i += 2000) {
      const chunk = times.slice(i, i + 2000);
      const got = (await redis.eval(program, 0, ...chunk.map(String))) as number[];
      expect(got).toEqual(chunk.map(js));
    }
  });

  it('at random times', async () => {
    const times = fc.sample(fc.integer({ min: 0, max: Date.UTC(2500, 0, 1) }), { numRuns: 5000, seed: 42 });
    const got = (await redis.eval(program, 0, ...times.map(String))) as number[];
    expect(got).toEqual(times.map(js));
  });
});

/** Where a stored state's window lies relative to the script's: relative index, or none. */
type Where = 'missing' | 0 | -1 | -2 | -7 | 1;

type Case = {
  limits: Array<{ requests: number; windowMs: number; where: Where; current: number; previous: number }>;
  quota: { requests: number; per: QuotaPeriod; where: 'missing' | 0 | -1; used: number } | null;
};

const arbCase: fc.Arbitrary<Case> = fc.record({
  limits: fc.array(
    fc.record({
      requests: fc.integer({ min: 1, max: 8 }),
      windowMs: fc.oneof(fc.integer({ min: 2, max: 25 }), fc.constantFrom(2, 3, 4, 5, 10, 1000)),
      where: fc.constantFrom<Where>('missing', 0, 0, 0, -1, -1, -2, -7, 1),
      current: fc.nat(9),
      previous: fc.nat(9),
    }),
    { minLength: 1, maxLength: 3 },
  ),
  quota: fc.option(
    fc.record({
      requests: fc.integer({ min: 1, max: 6 }),
      per: fc.constantFrom<QuotaPeriod>('day', 'month'),
      where: fc.constantFrom<'missing' | 0 | -1>('missing', 0, 0, -1),
      used: fc.nat(7),
    }),
    { nil: null },
  ),
});

async function redisNow(): Promise<number> {
  const [s, us] = await redis.time();
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
}

/** Writes the case's state, runs the script once, replays it in TypeScript; checks they agree. */
async function check(c: Case): Promise<Outcome> {
  const tag = `${PREFIX}{${randomUUID()}}`;
  const limitKeys = c.limits.map((_, i) => `${tag}:${i}`);
  const quotaKey = `${tag}:q`;
  const keys = c.quota ? [...limitKeys, quotaKey] : limitKeys;
  try {
    const before = await redisNow();
    const stored: Array<LimitState | undefined> = [];
    for (const [i, l] of c.limits.entries()) {
      if (l.where === 'missing') {
        stored.push(undefined);
        continue;
      }
      const state = {
        index: Math.floor(before / l.windowMs) + l.where,
        current: l.current,
        previous: l.previous,
      };
      stored.push(state);
      await redis.hset(limitKeys[i] as string, 'i', state.index, 'c', state.current, 'p', state.previous);
    }
    let storedQuota: QuotaState | undefined;
    if (c.quota && c.quota.where !== 'missing') {
      storedQuota = { period: periodOf(c.quota.per, before) + c.quota.where, used: c.quota.used };
      await redis.hset(quotaKey, 'p', storedQuota.period, 'n', storedQuota.used);
    }

    const args: Array<string | number> = [c.limits.length];
    for (const l of c.limits) args.push(l.windowMs, l.requests);
    args.push(c.quota?.requests ?? 0, c.quota?.per ?? '');
    const reply = await redis.ghRateLimitTest(keys.length, ...keys, ...args);

    // the same request in TypeScript, at the script's time
    const now = reply[1] as number;
    expect(Math.abs(now - before)).toBeLessThan(1000);
    const plan: Plan = {
      tier: 't',
      limits: c.limits.map((l) => ({ requests: l.requests, windowMs: l.windowMs, name: 'x' })),
      quota: c.quota ? { requests: c.quota.requests, per: c.quota.per } : null,
    };
    const states = c.limits.map((l, i) => ({ ...rolled(stored[i], l.windowMs, now) }));
    const quota = c.quota ? { ...rolledQuota(storedQuota, c.quota.per, now) } : null;
    const outcome = admitted(plan, states, quota, now);
    const context = JSON.stringify({ case: c, stored, storedQuota, now, reply });
    expect(OUTCOMES[reply[0] as number], context).toBe(outcome);
    if (outcome === 'allowed') {
      for (const s of states) s.current++;
      if (quota) quota.used++;
    }
    const expected = [...states.flatMap((s) => [s.index, s.current, s.previous])];
    expected.push(quota?.period ?? 0, quota?.used ?? 0);
    expect(reply.slice(2), context).toEqual(expected);

    // what is stored: the counts after an admitted request, untouched after a refused one
    for (const [i, l] of c.limits.entries()) {
      const key = limitKeys[i] as string;
      const h = await redis.hgetall(key);
      const s = states[i] as LimitState;
      if (outcome === 'allowed') {
        // a window of a few ms expires (after 2W) while the test reads it back
        const gone = l.windowMs < 1000 && Object.keys(h).length === 0;
        if (!gone)
          expect(h, context).toEqual({ i: String(s.index), c: String(s.current), p: String(s.previous) });
        const ttl = await redis.pttl(key);
        if (l.windowMs >= 1000) expect(ttl).toBeGreaterThan(0);
        expect(ttl).toBeLessThanOrEqual(2 * l.windowMs);
      } else {
        const was = stored[i];
        expect(h, context).toEqual(
          was ? { i: String(was.index), c: String(was.current), p: String(was.previous) } : {},
        );
      }
    }
    if (c.quota) {
      const h = await redis.hgetall(quotaKey);
      if (outcome === 'allowed') expect(h).toEqual({ p: String(quota?.period), n: String(quota?.used) });
      else
        expect(h).toEqual(storedQuota ? { p: String(storedQuota.period), n: String(storedQuota.used) } : {});
    }
    return outcome;
  } finally {
    await redis.del(...keys);
  }
}

describe('the Lua script agrees with window.ts', () => {
  it('random states, windows of a few ms, quotas: same outcome, counts and stored state', async () => {
    const seen = new Set<Outcome>();
    await fc.assert(
      fc.asyncProperty(arbCase, async (c) => {
        seen.add(await check(c));
      }),
      { numRuns: 600 },
    );
    // all three outcomes occurred (a property that never refuses would prove little)
    expect([...seen].sort()).toEqual(['allowed', 'quota_exceeded', 'rate_limited']);
  });

  it('boundary: estimate + 1 exactly L is admitted, just above is refused', async () => {
    // p = 2, c = 0, L = 2, W = 2 ms: at e = 0 the estimate is 2 (refused), at e = 1 it is 1 (admitted)
    let admittedAt1 = 0;
    let refusedAt0 = 0;
    for (let i = 0; i < 200 && (admittedAt1 === 0 || refusedAt0 === 0); i++) {
      const tag = `${PREFIX}{edge-${i}}`;
      const before = await redisNow();
      await redis.hset(`${tag}:0`, 'i', Math.floor(before / 2), 'p', 2, 'c', 0);
      const reply = await redis.ghRateLimitTest(1, `${tag}:0`, 1, 2, 2, 0, '');
      await redis.del(`${tag}:0`);
      const now = reply[1] as number;
      const index = Math.floor(now / 2);
      if (index !== Math.floor(before / 2)) continue; // the window moved on meanwhile
      if (now % 2 === 0) {
        expect(reply[0]).toBe(1);
        refusedAt0++;
      } else {
        expect(reply[0]).toBe(0);
        admittedAt1++;
      }
    }
    expect(admittedAt1 + refusedAt0).toBeGreaterThan(0);
  });
});

describe('taking back a late admission (REFUND_SCRIPT) and the deadline', () => {
  const W = 60_000;
  const DAY = 86_400_000;

  it("decrements the count of the window that held the request: c while current, p once rolled, nothing once faded; the quota's while in its period", async () => {
    const key = `${PREFIX}{refund}`;
    // the current window index, stored: window k−1 starts day 1, window k−2 ends day 0
    const k = 1441;
    const reset = async () => {
      await redis.del(`${key}:1m`, `${key}:q:day`);
      await redis.hset(`${key}:1m`, 'i', k, 'c', 3, 'p', 2);
      await redis.hset(`${key}:q:day`, 'p', Math.floor((k * W) / DAY), 'n', 5);
    };
    const refund = (time: number) => redis.ghRefundTest(2, `${key}:1m`, `${key}:q:day`, 1, W, 'day', time);
    const state = async () => ({
      ...(await redis.hgetall(`${key}:1m`)),
      n: await redis.hget(`${key}:q:day`, 'n'),
    });
    await reset();
    await refund(k * W + 5); // counted in the current window
    expect(await state()).toEqual({ i: String(k), c: '2', p: '2', n: '4' });
    await reset();
    await refund((k - 1) * W + 5); // counted in the window before: now the previous one
    expect(await state()).toEqual({ i: String(k), c: '3', p: '1', n: '4' });
    await reset();
    await refund((k - 2) * W + 5); // faded: nothing to take back; and the day before: not the quota
    expect(await state()).toEqual({ i: String(k), c: '3', p: '2', n: '5' });
    // never below zero
    await redis.hset(`${key}:1m`, 'c', 0, 'p', 0);
    await redis.hset(`${key}:q:day`, 'n', 0);
    await refund(k * W + 5);
    await refund((k - 1) * W + 5);
    expect(await state()).toEqual({ i: String(k), c: '0', p: '0', n: '0' });
    await redis.del(`${key}:1m`, `${key}:q:day`);
  });

  it('a command run after its deadline reads and counts nothing; before it, as usual', async () => {
    const key = `${PREFIX}{deadline}`;
    const [sec] = await redis.time();
    const now = Number(sec) * 1000;
    const late = await redis.ghRateLimitTest(1, `${key}:1m`, 1, W, 10, 0, '', now - 10_000);
    expect(late[0]).toBe(3);
    expect(await redis.exists(`${key}:1m`)).toBe(0);
    const inTime = await redis.ghRateLimitTest(1, `${key}:1m`, 1, W, 10, 0, '', now + 60_000);
    expect(inTime[0]).toBe(0);
    expect(await redis.hget(`${key}:1m`, 'c')).toBe('1');
    await redis.del(`${key}:1m`);
  });
});
