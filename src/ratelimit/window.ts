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
 * rolling window of length W, at most L + p·f < 2L can be admitted, in the pathological case where
 * the whole previous window's traffic came at its very end; with traffic spread over the window
 * the estimate matches a true sliding log closely (see docs/rate-limiting.md).
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

export function admits(state: LimitState, limit: LimitSpec, now: number): boolean {
  return estimate(state, limit.windowMs, now) + 1 <= limit.requests;
}

/** Milliseconds until a request would be admitted by this limit, from its (rolled) state. */
export function waitMs(state: LimitState, limit: LimitSpec, now: number): number {
  const { requests: L, windowMs: W } = limit;
  const start = state.index * W;
  if (state.current + 1 <= L) {
    if (state.previous === 0) return 0;
    // p·(1 − f) + c + 1 ≤ L  ⇔  f ≥ 1 − (L − c − 1)/p
    const f = 1 - (L - state.current - 1) / state.previous;
    return Math.max(0, Math.ceil(start + f * W - now));
  }
  // Not in this window: in the next one the current count becomes the previous one.
  if (L < 1) return Number.POSITIVE_INFINITY;
  const f = Math.max(0, 1 - (L - 1) / state.current);
  return Math.ceil(start + W + f * W - now);
}

/** Requests left under this limit (after this request, when it was admitted). */
export function remaining(state: LimitState, limit: LimitSpec, now: number): number {
  return Math.max(0, Math.floor(limit.requests - estimate(state, limit.windowMs, now) + 1e-9));
}

/** Milliseconds until the current fixed window ends (the `t` of the RateLimit header). */
export function windowResetMs(limit: LimitSpec, now: number): number {
  return (Math.floor(now / limit.windowMs) + 1) * limit.windowMs - now;
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

export function periodEnd(per: QuotaPeriod, now: number): number {
  if (per === 'day') return (Math.floor(now / DAY) + 1) * DAY;
  const d = new Date(now);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
}

export function rolledQuota(state: QuotaState | undefined, per: QuotaPeriod, now: number): QuotaState {
  const period = periodOf(per, now);
  return state?.period === period ? state : { period, used: 0 };
}
