/**
 * The sliding-window counter, as pure functions over counts and a time. The Redis script
 * (redis-script.ts) makes the same admission decision atomically from the same state; the
 * memory store and everything after the decision (remaining, reset, Retry-After) use these.
 *
 * Per limit (L requests per window W): the counts of the current and the previous fixed window,
 * c and p. At time t, a fraction f of the current window has passed, and the estimate of the
 * requests in the last W is  p·(1 − f) + c.  A request is admitted when, for every limit,
 * estimate + 1 ≤ L (and the quota is not used up); then every counter is incremented. A refused
 * request counts nothing.
 *
 * Accuracy: within any fixed window at most L are admitted (the estimate is ≥ c). Over any
 * rolling window of length W, at most L + ⌊p·σ/W⌋ ≤ 2L − 1 (σ: how far the rolling window reaches
 * into the later fixed window), in the pathological case where the whole previous window's traffic
 * came at its very end. With steady traffic the estimate equals the true count of the last W
 * (see docs/rate-limiting.md, which derives both).
 */

export type LimitSpec = { readonly requests: number; readonly windowMs: number; readonly name: string };

/** Counts of one limit as stored: the current window's index and count, the previous count. */
export type LimitState = { index: number; current: number; previous: number };

/** The state as seen at `now` (rolled forward if windows have passed). */
export function rolled(state: LimitState | undefined, windowMs: number, now: number): LimitState {
  const index = Math.floor(now / windowMs);
  if (state === undefined) return { index, current: 0, previous: 0 };
  if (state.index === index) return state;
  if (state.index === index - 1) return { index, current: 0, previous: state.current };
  return { index, current: 0, previous: 0 };
}

export function estimate(state: LimitState, windowMs: number, now: number): number {
  const elapsed = now - state.index * windowMs;
  return (state.previous * (windowMs - elapsed)) / windowMs + state.current;
}

/** The admission rule for one limit (the Redis script evaluates the same expression). */
export function admits(state: LimitState, limit: LimitSpec, now: number): boolean {
  return estimate(state, limit.windowMs, now) + 1 <= limit.requests;
}

/**
 * The first elapsed time e (ms into a window, 0 ≤ e < W) at which a window with counts p and c
 * has room for k more requests, or -1 when it has not before it ends. In integers, exactly:
 *   p·(W − e)/W + c + k ≤ L  ⇔  p·(W − e) ≤ (L − c − k)·W  ⇔  e ≥ W − ⌊(L − c − k)·W / p⌋
 */
function firstRoom(p: number, c: number, k: number, L: number, W: number): number {
  const room = L - c - k;
  if (room < 0) return -1;
  if (p <= room) return 0;
  const e = W - Math.floor((room * W) / p);
  return e < W ? e : -1;
}

/** Milliseconds from `now` until the limit has room for k more requests, if none is admitted meanwhile. */
function untilRoom(state: LimitState, limit: LimitSpec, now: number, k: number): number {
  const { requests: L, windowMs: W } = limit;
  if (k > L) return Number.POSITIVE_INFINITY;
  const start = state.index * W;
  // in this window
  const here = firstRoom(state.previous, state.current, k, L, W);
  if (here >= 0) return Math.max(0, start + here - now);
  // in the next one, where this window's count becomes the previous one
  const next = firstRoom(state.current, 0, k, L, W);
  if (next >= 0) return start + W + next - now;
  // the one after that starts empty
  return start + 2 * W - now;
}

/**
 * Milliseconds from `now` until this limit admits a request, if none is admitted meanwhile
 * (0 = it admits one now), from its state rolled to `now`. Exact to the millisecond: at
 * `now + waitMs` the request is admitted, at `now + waitMs − 1` it is not. The estimate never
 * grows while nothing is admitted, so a limit stays open once it opens.
 */
export function waitMs(state: LimitState, limit: LimitSpec, now: number): number {
  return untilRoom(state, limit, now, 1);
}

/**
 * Requests this limit would still admit at `now` (after this request, when it was admitted):
 * the largest r with estimate + r ≤ L, that is L − c − ⌈p·(W − e)/W⌉.
 */
export function remaining(state: LimitState, limit: LimitSpec, now: number): number {
  const { requests: L, windowMs: W } = limit;
  const elapsed = now - state.index * W;
  return Math.max(0, L - state.current - Math.ceil((state.previous * (W - elapsed)) / W));
}

/**
 * Milliseconds until this limit admits one request more than it does now (the `t` of the
 * RateLimit field: "seconds until additional quota is made available", which with a sliding
 * window comes before the window ends). With nothing left now this is `waitMs`. 0 when the
 * limit is untouched (its whole quota is available).
 */
export function replenishMs(state: LimitState, limit: LimitSpec, now: number): number {
  const r = remaining(state, limit, now);
  return r >= limit.requests ? 0 : untilRoom(state, limit, now, r + 1);
}

// ---- quotas: calendar periods in UTC ----

export type QuotaPeriod = 'day' | 'month';
export type QuotaSpec = { readonly requests: number; readonly per: QuotaPeriod };
export type QuotaState = { period: number; used: number };

const DAY = 86_400_000;

/** The period's number: days since the epoch, or months since year 0 (year·12 + month). */
export function periodOf(per: QuotaPeriod, now: number): number {
  if (per === 'day') return Math.floor(now / DAY);
  const d = new Date(now);
  return d.getUTCFullYear() * 12 + d.getUTCMonth();
}

/** When the calendar period that contains `now` began (00:00 UTC of the day, or of the 1st). */
export function periodStart(per: QuotaPeriod, now: number): number {
  if (per === 'day') return Math.floor(now / DAY) * DAY;
  const d = new Date(now);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

/** When the calendar period that contains `now` ends (the next one's start). */
export function periodEnd(per: QuotaPeriod, now: number): number {
  if (per === 'day') return (Math.floor(now / DAY) + 1) * DAY;
  const d = new Date(now);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
}

export function rolledQuota(state: QuotaState | undefined, per: QuotaPeriod, now: number): QuotaState {
  const period = periodOf(per, now);
  return state?.period === period ? state : { period, used: 0 };
}
