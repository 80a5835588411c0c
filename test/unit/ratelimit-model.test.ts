/**
 * The memory store against a reference model, with fast-check: random limits and quotas, random
 * request times (sorted, many exactly on window and period edges or 1 ms off them).
 *
 * The model is written plainly and independently of window.ts: it keeps the number of admitted
 * requests of every fixed window (and of every calendar day or month, by its UTC date), and
 * applies the weighted rule in integers, so it is exact:
 *   admit when, for every limit, prev·(W − e) + (cur + 1)·W ≤ L·W, and the quota has room.
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import type { Outcome, Plan } from '../../src/ratelimit/decision.js';
import { MemoryStore } from '../../src/ratelimit/memory-store.js';

type Limit = { requests: number; windowMs: number; name: string };
type Quota = { requests: number; per: 'day' | 'month' };

class Model {
  /** per limit: fixed window index → admitted requests */
  private readonly windows: Array<Map<number, number>>;
  /** calendar period ("2027-1" or "2027-1-31", UTC) → admitted requests */
  private readonly periods = new Map<string, number>();
  /** every admitted request's time */
  readonly admitted: number[] = [];

  constructor(
    readonly limits: readonly Limit[],
    readonly quota: Quota | null,
  ) {
    this.windows = limits.map(() => new Map());
  }

  private period(t: number): string {
    const d = new Date(t);
    return this.quota?.per === 'day'
      ? `${d.getUTCFullYear()}-${d.getUTCMonth()}-${d.getUTCDate()}`
      : `${d.getUTCFullYear()}-${d.getUTCMonth()}`;
  }

  /** does limit i have room for `extra` more requests at t? */
  private room(i: number, t: number, extra: number): boolean {
    const { requests: L, windowMs: W } = this.limits[i] as Limit;
    const counts = this.windows[i] as Map<number, number>;
    const k = Math.floor(t / W);
    const e = t - k * W;
    const prev = counts.get(k - 1) ?? 0;
    const cur = counts.get(k) ?? 0;
    return prev * (W - e) + (cur + extra) * W <= L * W;
  }

  private quotaUsed(t: number): number {
    return this.periods.get(this.period(t)) ?? 0;
  }

  /** what a request at t would get, without counting it */
  peek(t: number): Outcome {
    if (this.quota && this.quotaUsed(t) + 1 > this.quota.requests) return 'quota_exceeded';
    for (let i = 0; i < this.limits.length; i++) if (!this.room(i, t, 1)) return 'rate_limited';
    return 'allowed';
  }

  request(t: number): Outcome {
    const outcome = this.peek(t);
    if (outcome !== 'allowed') return outcome;
    this.limits.forEach((limit, i) => {
      const counts = this.windows[i] as Map<number, number>;
      const k = Math.floor(t / limit.windowMs);
      counts.set(k, (counts.get(k) ?? 0) + 1);
    });
    if (this.quota) this.periods.set(this.period(t), this.quotaUsed(t) + 1);
    this.admitted.push(t);
    return outcome;
  }

  /** how many more requests limit i would admit at t */
  remaining(i: number, t: number): number {
    let n = 0;
    while (this.room(i, t, n + 1)) n++;
    return n;
  }

  quotaRemaining(t: number): number {
    return Math.max(0, (this.quota?.requests ?? 0) - this.quotaUsed(t));
  }
}

const stores: MemoryStore[] = [];
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
});

/** Replays `times` through a fresh memory store and a fresh model; checks every decision. */
function replay(limits: readonly Limit[], quota: Quota | null, times: readonly number[]): Model {
  const clock = { t: 0 };
  const store = new MemoryStore(() => clock.t);
  stores.push(store);
  const model = new Model(limits, quota);
  const plan: Plan = { tier: 't', limits, quota };
  for (const t of times) {
    clock.t = t;
    const d = store.consumeSync('k', plan);
    const expected = model.request(t);
    expect(d.outcome, `request at ${t}`).toBe(expected);

    // remaining, per limit and for the quota
    limits.forEach((_, i) =>
      expect(d.policies[i]?.remaining, `remaining ${i} at ${t}`).toBe(model.remaining(i, t)),
    );
    if (quota) expect(d.policies[limits.length]?.remaining).toBe(model.quotaRemaining(t));

    // t of each limit: after t seconds more are left; a second earlier, no more than now
    limits.forEach((limit, i) => {
      const p = d.policies[i];
      if (p === undefined) throw new Error('missing policy');
      if (p.remaining === limit.requests) return expect(p.resetSec).toBe(0);
      expect(model.remaining(i, t + p.resetSec * 1000)).toBeGreaterThan(p.remaining);
      if (p.resetSec > 1) expect(model.remaining(i, t + (p.resetSec - 1) * 1000)).toBe(p.remaining);
      return undefined;
    });

    // Retry-After: a request after that many seconds is admitted; a second earlier it is not
    if (expected === 'allowed') expect(d.retryAfterSec).toBe(0);
    else {
      expect(d.retryAfterSec).toBeGreaterThanOrEqual(1);
      expect(model.peek(t + d.retryAfterSec * 1000), `retry after ${d.retryAfterSec} s from ${t}`).toBe(
        'allowed',
      );
      if (d.retryAfterSec > 1) expect(model.peek(t + (d.retryAfterSec - 1) * 1000)).not.toBe('allowed');
      // and the RateLimit field names a policy with nothing left whose t is the Retry-After
      expect(d.policies[d.tightest]?.remaining).toBe(0);
      expect(d.policies[d.tightest]?.resetSec).toBe(d.retryAfterSec);
    }
  }
  return model;
}

const DAY = 86_400_000;

const arbLimit = fc
  .record({
    requests: fc.integer({ min: 1, max: 12 }),
    windowMs: fc.oneof(fc.integer({ min: 1, max: 3000 }), fc.constantFrom(1000, 60_000, 3_600_000, 7, 10, 3)),
  })
  .map((l) => ({ ...l, name: `${l.windowMs}ms` }));

const arbQuota = fc.option(
  fc.record({
    requests: fc.integer({ min: 1, max: 40 }),
    per: fc.constantFrom<'day' | 'month'>('day', 'month'),
  }),
  { nil: null },
);

/** How the clock moves from one request to the next. */
type Step =
  | { kind: 'same' }
  | { kind: 'small'; ms: number }
  | { kind: 'edge'; limit: number; off: number }
  | { kind: 'period'; off: number }
  | { kind: 'jump'; windows: number };

const arbStep: fc.Arbitrary<Step> = fc.oneof(
  { arbitrary: fc.constant({ kind: 'same' as const }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('small' as const), ms: fc.nat(40) }), weight: 4 },
  {
    arbitrary: fc.record({
      kind: fc.constant('edge' as const),
      limit: fc.nat(2),
      off: fc.constantFrom(-1, 0, 0, 1),
    }),
    weight: 4,
  },
  {
    arbitrary: fc.record({ kind: fc.constant('period' as const), off: fc.constantFrom(-1, 0, 1) }),
    weight: 1,
  },
  {
    arbitrary: fc.record({
      kind: fc.constant('jump' as const),
      windows: fc.double({ min: 0, max: 2.5, noNaN: true }),
    }),
    weight: 2,
  },
);

/** A start: anywhere, or just before a month's end (Jan 31, Feb 28/29 2028, Dec 31). */
const arbStart = fc.oneof(
  fc.integer({ min: 0, max: 4_000_000_000_000 }),
  fc
    .record({
      month: fc.constantFrom(
        Date.UTC(2027, 1, 1),
        Date.UTC(2028, 2, 1),
        Date.UTC(2028, 0, 1),
        Date.UTC(2030, 6, 1),
      ),
      before: fc.integer({ min: 0, max: 5000 }),
    })
    .map(({ month, before }) => month - before),
);

function timesFrom(
  start: number,
  steps: readonly Step[],
  limits: readonly Limit[],
  quota: Quota | null,
): number[] {
  const times: number[] = [];
  let t = start;
  const maxW = Math.max(...limits.map((l) => l.windowMs));
  for (const step of steps) {
    switch (step.kind) {
      case 'same':
        break;
      case 'small':
        t += step.ms;
        break;
      case 'edge': {
        const W = (limits[step.limit % limits.length] as Limit).windowMs;
        t = Math.max(t, (Math.floor(t / W) + 1) * W + step.off);
        break;
      }
      case 'period': {
        const d = new Date(t);
        const next =
          quota?.per === 'month'
            ? Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1)
            : (Math.floor(t / DAY) + 1) * DAY;
        t = Math.max(t, next + step.off);
        break;
      }
      case 'jump':
        t += Math.floor(step.windows * maxW);
        break;
    }
    times.push(t);
  }
  return times;
}

const arbScenario = fc
  .record({
    limits: fc.array(arbLimit, { minLength: 1, maxLength: 3 }),
    quota: arbQuota,
    start: arbStart,
    steps: fc.array(arbStep, { minLength: 1, maxLength: 150 }),
  })
  .map(({ limits, quota, start, steps }) => ({
    limits,
    quota,
    times: timesFrom(start, steps, limits, quota),
  }));

describe('the memory store against the reference model', () => {
  it('gives exactly the model’s admit/refuse sequence, remaining, t and Retry-After', () => {
    fc.assert(
      fc.property(arbScenario, ({ limits, quota, times }) => {
        replay(limits, quota, times);
      }),
      { numRuns: 400 },
    );
  });

  it('quota-only tiers, across many day and month ends', () => {
    fc.assert(
      fc.property(
        fc.record({
          quota: fc.record({
            requests: fc.integer({ min: 1, max: 5 }),
            per: fc.constantFrom<'day' | 'month'>('day', 'month'),
          }),
          start: arbStart,
          steps: fc.array(
            fc.oneof(
              fc.record({ kind: fc.constant('period' as const), off: fc.constantFrom(-1, 0, 1) }),
              fc.record({ kind: fc.constant('small' as const), ms: fc.nat(5) }),
            ),
            { minLength: 1, maxLength: 80 },
          ),
        }),
        ({ quota, start, steps }) => {
          // no limits: the plan is the quota alone
          const times = timesFrom(start, steps, [{ requests: 1, windowMs: DAY, name: '1d' }], quota);
          replay([], quota, times);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('the accuracy bound', () => {
  it('in any fixed window at most L; in any interval of length d ≤ W fewer than L + L·d/W (so < 2L over W)', () => {
    fc.assert(
      fc.property(arbScenario, ({ limits, times }) => {
        const model = replay(limits, null, times);
        for (const { requests: L, windowMs: W } of limits) {
          const perWindow = new Map<number, number>();
          for (const t of model.admitted) {
            const k = Math.floor(t / W);
            perWindow.set(k, (perWindow.get(k) ?? 0) + 1);
          }
          for (const n of perWindow.values()) expect(n).toBeLessThanOrEqual(L);
          const ts = model.admitted;
          for (let a = 0; a < ts.length; a++) {
            for (const d of [Math.max(1, Math.floor(W / 10)), Math.ceil(W / 2), W]) {
              let n = 0;
              for (let b = a; b < ts.length && (ts[b] as number) < (ts[a] as number) + d; b++) n++;
              // n < L + L·d/W, in integers
              expect(n * W).toBeLessThan(L * W + L * d);
              if (d === W) expect(n).toBeLessThanOrEqual(2 * L - 1);
            }
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('the bound is reached: 2L − 1 in a rolling window when the previous window’s traffic came at its end', () => {
    // L = 10 per 1000 ms: 10 at t = 999 (the end of window 0), then one request every ms
    const limits = [{ requests: 10, windowMs: 1000, name: '1s' }];
    const times = [
      ...Array.from({ length: 10 }, () => 999),
      ...Array.from({ length: 999 }, (_, i) => 1000 + i),
    ];
    const model = replay(limits, null, times);
    const inRolling = model.admitted.filter((t) => t >= 999 && t < 1999).length;
    expect(inRolling).toBe(19);
    // while a fixed-window counter would admit 20 within 2 ms: 10 at 999, 10 at 1000
    expect(model.admitted.filter((t) => t >= 999 && t <= 1000)).toHaveLength(10);
  });

  it('random (Poisson) traffic over the limit: rolling-window overshoot small, totals as an exact log', () => {
    // L = 100/min for 100 min; the figures in docs/rate-limiting.md come from this setup (20 seeds)
    const L = 100;
    const W = 60_000;
    const limits = [{ requests: L, windowMs: W, name: '1m' }];
    const maxInRolling = (ts: readonly number[]) => {
      let max = 0;
      for (let i = 0, j = 0; i < ts.length; i++) {
        while ((ts[j] as number) <= (ts[i] as number) - W) j++;
        max = Math.max(max, i - j + 1);
      }
      return max;
    };
    for (const rate of [1.2, 3]) {
      for (let seed = 1; seed <= 5; seed++) {
        let x = seed;
        const random = () => (x = (x * 1_664_525 + 1_013_904_223) >>> 0) / 2 ** 32;
        const times: number[] = [];
        for (let t = 1_000_000 * W; t < 1_000_100 * W;) {
          t += Math.round(-Math.log(1 - random()) / ((rate * L) / W));
          times.push(t);
        }
        // the memory store (the model's equal, checked above), an exact sliding log and a
        // fixed-window counter, fed the same arrivals
        const clock = { t: 0 };
        const store = new MemoryStore(() => clock.t);
        stores.push(store);
        const plan: Plan = { tier: 't', limits, quota: null };
        const admitted: number[] = [];
        const log: number[] = [];
        let logAdmitted = 0;
        const fixed = new Map<number, number>();
        const fixedAdmitted: number[] = [];
        for (const t of times) {
          clock.t = t;
          if (store.consumeSync('k', plan).outcome === 'allowed') admitted.push(t);
          while (log.length > 0 && (log[0] as number) <= t - W) log.shift();
          if (log.length < L) {
            log.push(t);
            logAdmitted++;
          }
          const k = Math.floor(t / W);
          if ((fixed.get(k) ?? 0) < L) {
            fixed.set(k, (fixed.get(k) ?? 0) + 1);
            fixedAdmitted.push(t);
          }
        }
        expect(maxInRolling(admitted)).toBeLessThanOrEqual(1.2 * L);
        expect(maxInRolling(fixedAdmitted)).toBeGreaterThan(maxInRolling(admitted));
        expect(Math.abs(admitted.length / logAdmitted - 1)).toBeLessThan(0.02);
      }
    }
  });

  it('steady traffic: the estimate is the true count of the last W, so exactly L per W get through', () => {
    // one request every 10 ms against 50 per 1000 ms (twice the allowed rate) for 20 s
    const limits = [{ requests: 50, windowMs: 1000, name: '1s' }];
    const times = Array.from({ length: 2000 }, (_, i) => 1_000_000 + i * 10);
    const model = replay(limits, null, times);
    // after the first window, every rolling window of 1000 ms holds 50 or 51 admitted requests
    const ts = model.admitted;
    for (let a = 0; a < ts.length; a++) {
      const from = ts[a] as number;
      if (from < 1_002_000 || from > 1_018_000) continue;
      const n = ts.filter((t) => t >= from && t < from + 1000).length;
      expect(n).toBeGreaterThanOrEqual(49);
      expect(n).toBeLessThanOrEqual(51);
    }
  });
});
