/** From counts to a decision and what the client is told about it. Pure. */
import {
  admits,
  periodEnd,
  periodStart,
  remaining,
  replenishMs,
  waitMs,
  type LimitSpec,
  type LimitState,
  type QuotaSpec,
  type QuotaState,
} from './window.js';

/** What one request is checked against: a tier's limits and quota. */
export type Plan = {
  readonly tier: string;
  readonly limits: readonly LimitSpec[];
  readonly quota: QuotaSpec | null;
};

export type Outcome = 'allowed' | 'rate_limited' | 'quota_exceeded';

/** One entry of RateLimit-Policy, and the state of the tightest one for RateLimit. */
export type PolicyView = {
  /** a limit's window as written (`1m`), or the quota's period (`day`, `month`) */
  name: string;
  kind: 'limit' | 'quota';
  /** `q`: requests per window or period */
  quota: number;
  /** `w`: the window or period, in seconds */
  windowSec: number;
  /** `r`: requests still admitted now */
  remaining: number;
  /**
   * `t`: seconds until more requests are admitted than `remaining` (a sliding window frees
   * capacity as its previous window fades; a quota at the end of its period); 0 when nothing is
   * used. When `remaining` is 0 this is when the next request is admitted.
   */
  resetSec: number;
};

export type Decision = {
  readonly outcome: Outcome;
  /** whole seconds, ≥ 1, when refused; 0 when allowed */
  readonly retryAfterSec: number;
  readonly policies: readonly PolicyView[];
  /** index into `policies` of the one with the fewest requests left (ties: the longest `t`) */
  readonly tightest: number;
  /** when it was decided, in ms on the store's clock (Redis's `TIME`): what a refund needs */
  readonly time: number;
};

/**
 * The admission rule (the Redis script applies the same one): the quota first, then every
 * limit. States are rolled to `now`.
 */
export function admitted(
  plan: Plan,
  states: readonly LimitState[],
  quota: QuotaState | null,
  now: number,
): Outcome {
  if (plan.quota && quota && quota.used + 1 > plan.quota.requests) return 'quota_exceeded';
  for (let i = 0; i < plan.limits.length; i++) {
    if (!admits(states[i] as LimitState, plan.limits[i] as LimitSpec, now)) return 'rate_limited';
  }
  return 'allowed';
}

/**
 * The decision as the client sees it. `states`/`quota` are rolled to `now` and are the counts
 * after this request was counted (when allowed) or as they were (when refused).
 */
export function describe(
  plan: Plan,
  outcome: Outcome,
  states: readonly LimitState[],
  quota: QuotaState | null,
  now: number,
): Decision {
  const policies: PolicyView[] = [];
  // when refused: the latest time at which every limit and the quota admit again (each stays
  // open once it opens, so the latest opening is when all are open)
  let retryMs = 0;
  plan.limits.forEach((limit, i) => {
    const state = states[i] as LimitState;
    policies.push({
      name: limit.name,
      kind: 'limit',
      quota: limit.requests,
      windowSec: Math.round(limit.windowMs / 1000),
      remaining: remaining(state, limit, now),
      resetSec: Math.ceil(replenishMs(state, limit, now) / 1000),
    });
    if (outcome !== 'allowed' && !admits(state, limit, now))
      retryMs = Math.max(retryMs, waitMs(state, limit, now));
  });
  if (plan.quota && quota) {
    const { requests, per } = plan.quota;
    const end = periodEnd(per, now);
    policies.push({
      name: per,
      kind: 'quota',
      quota: requests,
      windowSec: Math.round((end - periodStart(per, now)) / 1000),
      remaining: Math.max(0, requests - quota.used),
      resetSec: quota.used > 0 ? Math.ceil((end - now) / 1000) : 0,
    });
    if (outcome !== 'allowed' && quota.used + 1 > requests) retryMs = Math.max(retryMs, end - now);
  }
  let tightest = 0;
  for (let i = 1; i < policies.length; i++) {
    const p = policies[i] as PolicyView;
    const t = policies[tightest] as PolicyView;
    if (p.remaining < t.remaining || (p.remaining === t.remaining && p.resetSec > t.resetSec)) tightest = i;
  }
  return {
    outcome,
    retryAfterSec: outcome === 'allowed' ? 0 : Math.max(1, Math.ceil(retryMs / 1000)),
    policies,
    tightest,
    time: now,
  };
}
