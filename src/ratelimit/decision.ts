/** From counts to a decision and what the client is told about it. Pure. */
import {
  admits,
  periodEnd,
  remaining,
  waitMs,
  windowResetMs,
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
  name: string;
  quota: number;
  windowSec: number;
  remaining: number;
  resetSec: number;
};

export type Decision = {
  readonly outcome: Outcome;
  /** whole seconds, ≥ 1, when refused; 0 when allowed */
  readonly retryAfterSec: number;
  readonly policies: readonly PolicyView[];
  /** index into `policies` of the one with the fewest requests left */
  readonly tightest: number;
};

/** The admission rule (the Redis script applies the same one). States are rolled to `now`. */
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
 * The decision as the client sees it. `states`/`quota` are the counts after this request was
 * counted (when allowed) or as they were (when refused).
 */
export function describe(
  plan: Plan,
  outcome: Outcome,
  states: readonly LimitState[],
  quota: QuotaState | null,
  now: number,
): Decision {
  const policies: PolicyView[] = [];
  let retryMs = 0;
  plan.limits.forEach((limit, i) => {
    const state = states[i] as LimitState;
    policies.push({
      name: limit.name,
      quota: limit.requests,
      windowSec: Math.round(limit.windowMs / 1000),
      remaining: remaining(state, limit, now),
      resetSec: Math.max(1, Math.ceil(windowResetMs(limit, now) / 1000)),
    });
    if (outcome === 'rate_limited' && !admits(state, limit, now))
      retryMs = Math.max(retryMs, waitMs(state, limit, now));
  });
  if (plan.quota && quota) {
    const end = periodEnd(plan.quota.per, now);
    const periodMs =
      plan.quota.per === 'day'
        ? 86_400_000
        : end - Date.UTC(new Date(now).getUTCFullYear(), new Date(now).getUTCMonth(), 1);
    policies.push({
      name: plan.quota.per,
      quota: plan.quota.requests,
      windowSec: Math.round(periodMs / 1000),
      remaining: Math.max(0, plan.quota.requests - quota.used),
      resetSec: Math.max(1, Math.ceil((end - now) / 1000)),
    });
    if (outcome === 'quota_exceeded') retryMs = end - now;
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
  };
}
