/** The sliding-window arithmetic (src/ratelimit/window.ts), with exact expectations. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  admits,
  estimate,
  periodEnd,
  periodOf,
  periodStart,
  remaining,
  replenishMs,
  rolled,
  rolledQuota,
  waitMs,
  type LimitSpec,
  type LimitState,
} from '../../src/ratelimit/window.js';

const W = 60_000;
const minute: LimitSpec = { requests: 10, windowMs: W, name: '1m' };
/** the start of a one-minute window */
const K = Math.floor(1_700_000_000_000 / W);
const start = K * W;

describe('rolled: the state seen at a time', () => {
  const state: LimitState = { index: K, current: 7, previous: 4 };

  it('starts empty in the current window', () => {
    expect(rolled(undefined, W, start + 123)).toEqual({ index: K, current: 0, previous: 0 });
  });

  it('is unchanged in the same window, from its first to its last millisecond', () => {
    expect(rolled(state, W, start)).toBe(state);
    expect(rolled(state, W, start + W - 1)).toBe(state);
  });

  it('in the next window, the current count becomes the previous one', () => {
    expect(rolled(state, W, start + W)).toEqual({ index: K + 1, current: 0, previous: 7 });
    expect(rolled(state, W, start + 2 * W - 1)).toEqual({ index: K + 1, current: 0, previous: 7 });
  });

  it('after a skipped window, both counts are gone', () => {
    expect(rolled(state, W, start + 2 * W)).toEqual({ index: K + 2, current: 0, previous: 0 });
    expect(rolled(state, W, start + 50 * W + 17)).toEqual({ index: K + 50, current: 0, previous: 0 });
  });

  it('a state from a later window (the clock went back) counts as gone', () => {
    expect(rolled(state, W, start - 1)).toEqual({ index: K - 1, current: 0, previous: 0 });
  });
});

describe('estimate: p·(W − e)/W + c', () => {
  const state: LimitState = { index: K, current: 3, previous: 8 };

  it('counts the whole previous window at the window start', () => {
    expect(estimate(state, W, start)).toBe(11);
  });

  it('weights it by the part of the last W that lies in it', () => {
    expect(estimate(state, W, start + W / 4)).toBe(9);
    expect(estimate(state, W, start + W / 2)).toBe(7);
  });

  it('counts 1/W of it one millisecond before the end', () => {
    expect(estimate(state, W, start + W - 1)).toBeCloseTo(3 + 8 / W, 12);
    expect(estimate(state, W, start + W - 1)).toBeGreaterThan(3);
  });
});

describe('admits', () => {
  it('admits exactly L into an empty window, at one instant; the (L+1)th is refused', () => {
    let state = rolled(undefined, W, start);
    for (let i = 0; i < 10; i++) {
      expect(admits(state, minute, start)).toBe(true);
      state = { ...state, current: state.current + 1 };
    }
    expect(state.current).toBe(10);
    expect(admits(state, minute, start)).toBe(false);
    expect(admits(state, minute, start + W - 1)).toBe(false);
  });

  it('admits when estimate + 1 is exactly L, not when it is above', () => {
    // 10·(W − e)/W + 0 + 1 ≤ 10  ⇔  e ≥ 6000
    const state: LimitState = { index: K, current: 0, previous: 10 };
    expect(admits(state, minute, start + 5999)).toBe(false);
    expect(admits(state, minute, start + 6000)).toBe(true);
  });

  it('a full previous window blocks the start of the next one', () => {
    const full: LimitState = { index: K, current: 10, previous: 0 };
    const next = rolled(full, W, start + W);
    expect(next).toEqual({ index: K + 1, current: 0, previous: 10 });
    expect(admits(next, minute, start + W)).toBe(false);
  });
});

describe('waitMs', () => {
  it('is 0 when the limit admits now', () => {
    expect(waitMs({ index: K, current: 0, previous: 0 }, minute, start)).toBe(0);
    expect(waitMs({ index: K, current: 9, previous: 0 }, minute, start + 5)).toBe(0);
    expect(waitMs({ index: K, current: 0, previous: 10 }, minute, start + 6000)).toBe(0);
  });

  it('waits for the previous window to fade: p = L, c = 0 → 0.1 of the window', () => {
    expect(waitMs({ index: K, current: 0, previous: 10 }, minute, start)).toBe(6000);
    expect(waitMs({ index: K, current: 0, previous: 10 }, minute, start + 1000)).toBe(5000);
  });

  it('is exact where floating point is not: 1 − 0.7 is 0.30000000000000004', () => {
    // L = 8, p = 10, W = 1000: 10·(1000 − e)/1000 + 1 ≤ 8  ⇔  e ≥ 300, not 301
    const limit: LimitSpec = { requests: 8, windowMs: 1000, name: '1s' };
    const state: LimitState = { index: 5, current: 0, previous: 10 };
    expect(waitMs(state, limit, 5000)).toBe(300);
    expect(admits(state, limit, 5299)).toBe(false);
    expect(admits(state, limit, 5300)).toBe(true);
  });

  it('rounds a fractional opening up: 3·(1000 − e)/1000 ≤ 2 ⇔ e ≥ 333.3…', () => {
    const limit: LimitSpec = { requests: 3, windowMs: 1000, name: '1s' };
    expect(waitMs({ index: 0, current: 0, previous: 3 }, limit, 0)).toBe(334);
  });

  it('a full window: waits into the next one, where the count fades as the previous', () => {
    // next window: 10·(W − e)/W + 1 ≤ 10 ⇔ e ≥ 6000
    expect(waitMs({ index: K, current: 10, previous: 0 }, minute, start + 30_000)).toBe(36_000);
    expect(waitMs({ index: K, current: 10, previous: 7 }, minute, start + W - 1)).toBe(6001);
  });

  it('L = 1 and one admitted: two windows from the start of this one', () => {
    const one: LimitSpec = { requests: 1, windowMs: 1000, name: '1s' };
    expect(waitMs({ index: 7, current: 1, previous: 0 }, one, 7250)).toBe(1750);
    expect(admits(rolled({ index: 7, current: 1, previous: 0 }, 1000, 8999), one, 8999)).toBe(false);
    expect(admits(rolled({ index: 7, current: 1, previous: 0 }, 1000, 9000), one, 9000)).toBe(true);
  });

  it('property: after waiting waitMs the request IS admitted; 1 ms earlier it is NOT', () => {
    fc.assert(
      fc.property(arbLimit, arbCounts, fc.double({ min: 0, max: 1, noNaN: true }), (limit, counts, frac) => {
        const index = 1000;
        const state: LimitState = { index, ...counts(limit.requests) };
        const now = index * limit.windowMs + Math.min(limit.windowMs - 1, Math.floor(frac * limit.windowMs));
        const wait = waitMs(state, limit, now);
        expect(Number.isInteger(wait)).toBe(true);
        const at = (t: number) => admits(rolled(state, limit.windowMs, t), limit, t);
        expect(at(now + wait)).toBe(true);
        if (wait > 0) expect(at(now + wait - 1)).toBe(false);
        else expect(admits(state, limit, now)).toBe(true);
      }),
      { numRuns: 5000 },
    );
  });
});

describe('remaining', () => {
  it('is L − c − ⌈p·(W − e)/W⌉', () => {
    const state: LimitState = { index: K, current: 3, previous: 8 };
    expect(remaining(state, minute, start + W / 2)).toBe(3); // estimate 7
    expect(remaining(state, minute, start + W / 4)).toBe(1); // estimate 9
    expect(remaining(state, minute, start + W / 4 - 1)).toBe(0); // estimate 9.0001
    expect(remaining(state, minute, start)).toBe(0); // estimate 11 > L
    expect(remaining(state, minute, start + W - 1)).toBe(6); // estimate 3.0001
    expect(remaining({ index: K, current: 0, previous: 0 }, minute, start)).toBe(10);
  });

  it('property: exactly `remaining` more requests are admitted at the same instant', () => {
    fc.assert(
      fc.property(arbLimit, arbCounts, fc.double({ min: 0, max: 1, noNaN: true }), (limit, counts, frac) => {
        const state: LimitState = { index: 3, ...counts(limit.requests) };
        const now = 3 * limit.windowMs + Math.min(limit.windowMs - 1, Math.floor(frac * limit.windowMs));
        const r = remaining(state, limit, now);
        let s = state;
        let admitted = 0;
        while (admits(s, limit, now)) {
          admitted++;
          s = { ...s, current: s.current + 1 };
        }
        expect(admitted).toBe(r);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('replenishMs: until one request more than `remaining` is admitted', () => {
  it('is waitMs when nothing is left', () => {
    const state: LimitState = { index: K, current: 0, previous: 10 };
    expect(replenishMs(state, minute, start)).toBe(6000);
  });

  it('with some left: when the fading previous window frees the next one', () => {
    // at W/2: estimate 7, remaining 3; 4 are admitted once 8·(W − e)/W + 3 + 4 ≤ 10 ⇔ e ≥ 37 500
    const state: LimitState = { index: K, current: 3, previous: 8 };
    expect(remaining(state, minute, start + W / 2)).toBe(3);
    expect(replenishMs(state, minute, start + W / 2)).toBe(7500);
    expect(remaining(state, minute, start + 37_499)).toBe(3);
    expect(remaining(state, minute, start + 37_500)).toBe(4);
  });

  it('nothing fading in this window: in the next one', () => {
    // c = 18 of 60 at 44 s: 42 left; the 43rd comes 1 s into the next window (18·(W − e)/W ≤ 17)
    const limit: LimitSpec = { requests: 60, windowMs: W, name: '1m' };
    const state: LimitState = { index: K, current: 18, previous: 0 };
    expect(remaining(state, limit, start + 44_000)).toBe(42);
    expect(replenishMs(state, limit, start + 44_000)).toBe(16_000 + 3334);
  });

  it('is 0 for an untouched limit', () => {
    expect(replenishMs({ index: K, current: 0, previous: 0 }, minute, start + 5)).toBe(0);
  });

  it('property: at now + replenishMs more are left; 1 ms earlier no more than now', () => {
    fc.assert(
      fc.property(arbLimit, arbCounts, fc.double({ min: 0, max: 1, noNaN: true }), (limit, counts, frac) => {
        const state: LimitState = { index: 9, ...counts(limit.requests) };
        const now = 9 * limit.windowMs + Math.min(limit.windowMs - 1, Math.floor(frac * limit.windowMs));
        const r = remaining(state, limit, now);
        const ms = replenishMs(state, limit, now);
        const left = (t: number) => remaining(rolled(state, limit.windowMs, t), limit, t);
        if (r === limit.requests) {
          expect(ms).toBe(0);
          return;
        }
        expect(ms).toBeGreaterThan(0);
        expect(left(now + ms)).toBeGreaterThan(r);
        expect(left(now + ms - 1)).toBe(r);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('large limits and windows: exact while requests × window (ms) < 2⁵³', () => {
  // e.g. 3·10⁶ per 30 days, 10⁷ per 10 days; beyond that a double cannot hold p·(W − e) exactly
  // (the Lua script computes the same doubles, so both stores still agree with each other)
  const arbBig = fc
    .record({
      requests: fc.integer({ min: 1, max: 10_000_000 }),
      window: fc.double({ min: 0, max: 1, noNaN: true }),
      current: fc.double({ min: 0, max: 1, noNaN: true }),
      previous: fc.double({ min: 0, max: 1, noNaN: true }),
      frac: fc.double({ min: 0, max: 1, noNaN: true }),
    })
    .map((b) => {
      const maxW = Math.min(30 * 86_400_000, Math.floor(2 ** 53 / b.requests));
      const windowMs = Math.max(1000, Math.floor(b.window * maxW));
      const limit: LimitSpec = { requests: b.requests, windowMs, name: 'x' };
      const state: LimitState = {
        index: 20,
        current: Math.floor(b.current * b.requests),
        previous: Math.floor(b.previous * b.requests),
      };
      const now = 20 * windowMs + Math.min(windowMs - 1, Math.floor(b.frac * windowMs));
      return { limit, state, now };
    });

  it('waitMs stays exact to the millisecond', () => {
    fc.assert(
      fc.property(arbBig, ({ limit, state, now }) => {
        const wait = waitMs(state, limit, now);
        const at = (t: number) => admits(rolled(state, limit.windowMs, t), limit, t);
        expect(at(now + wait)).toBe(true);
        if (wait > 0) expect(at(now + wait - 1)).toBe(false);
      }),
      { numRuns: 5000 },
    );
  });

  it('remaining: r more are admitted, the (r+1)th is not', () => {
    fc.assert(
      fc.property(arbBig, ({ limit, state, now }) => {
        const r = remaining(state, limit, now);
        const plus = (n: number) => ({ ...state, current: state.current + n });
        if (r > 0) expect(admits(plus(r - 1), limit, now)).toBe(true);
        expect(admits(plus(r), limit, now)).toBe(false);
      }),
      { numRuns: 5000 },
    );
  });
});

describe('calendar quotas (UTC)', () => {
  const at = (iso: string) => Date.parse(iso);

  it('day: 00:00 UTC to 00:00 UTC', () => {
    const t = at('2027-03-14T23:59:59.999Z');
    expect(periodOf('day', t)).toBe(Math.floor(t / 86_400_000));
    expect(periodOf('day', t + 1)).toBe(periodOf('day', t) + 1);
    expect(periodStart('day', t)).toBe(at('2027-03-14T00:00:00.000Z'));
    expect(periodEnd('day', t)).toBe(at('2027-03-15T00:00:00.000Z'));
    expect(periodEnd('day', t + 1)).toBe(at('2027-03-16T00:00:00.000Z'));
  });

  it('month: Jan 31 → Feb 1', () => {
    const last = at('2027-01-31T23:59:59.999Z');
    expect(periodOf('month', last)).toBe(2027 * 12 + 0);
    expect(periodOf('month', last + 1)).toBe(2027 * 12 + 1);
    expect(periodStart('month', last)).toBe(at('2027-01-01T00:00:00.000Z'));
    expect(periodEnd('month', last)).toBe(last + 1);
  });

  it('month: February of a leap year has 29 days (2028), of another 28 (2027)', () => {
    expect(periodOf('month', at('2028-02-29T12:00:00Z'))).toBe(2028 * 12 + 1);
    expect(periodEnd('month', at('2028-02-29T12:00:00Z'))).toBe(at('2028-03-01T00:00:00Z'));
    expect(periodEnd('month', at('2028-02-01T00:00:00Z')) - at('2028-02-01T00:00:00Z')).toBe(29 * 86_400_000);
    expect(periodEnd('month', at('2027-02-28T23:59:59.999Z'))).toBe(at('2027-03-01T00:00:00Z'));
    expect(periodOf('month', at('2028-03-01T00:00:00Z'))).toBe(2028 * 12 + 2);
  });

  it('month: December → January changes the year, and the period number runs on', () => {
    const last = at('2027-12-31T23:59:59.999Z');
    expect(periodOf('month', last)).toBe(2027 * 12 + 11);
    expect(periodOf('month', last + 1)).toBe(2028 * 12 + 0);
    expect(periodOf('month', last + 1)).toBe(periodOf('month', last) + 1);
    expect(periodEnd('month', last)).toBe(at('2028-01-01T00:00:00Z'));
    expect(periodStart('month', last + 1)).toBe(last + 1);
  });

  it('rolledQuota keeps the count within a period and starts over in the next', () => {
    const t = at('2027-01-31T23:59:59.999Z');
    const state = { period: periodOf('month', t), used: 42 };
    expect(rolledQuota(state, 'month', t)).toBe(state);
    expect(rolledQuota(state, 'month', t + 1)).toEqual({ period: 2027 * 12 + 1, used: 0 });
    expect(rolledQuota(undefined, 'day', t)).toEqual({ period: Math.floor(t / 86_400_000), used: 0 });
  });
});

/** A limit of 1–30 requests per window of 1 ms to 2 min (odd lengths included). */
const arbLimit = fc
  .record({
    requests: fc.integer({ min: 1, max: 30 }),
    windowMs: fc.oneof(fc.integer({ min: 1, max: 120_000 }), fc.constantFrom(1000, 60_000, 7, 3)),
  })
  .map((l) => ({ ...l, name: 'x' }));

/** Counts for a limit of L: anywhere from empty to over full (a lowered limit after a reload). */
const arbCounts = fc.record({ c: fc.nat(40), p: fc.nat(40), capped: fc.boolean() }).map(
  ({ c, p, capped }) =>
    (L: number): Omit<LimitState, 'index'> =>
      capped ? { current: c % (L + 1), previous: p % (L + 1) } : { current: c, previous: p },
);
