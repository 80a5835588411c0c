/**
 * A subject's usage as the admin API shows it: per limit of its tier, the current window's
 * counts and what is left, and the quota's; read from the store without counting (`peek`).
 */
import type { RateLimiter } from './limiter.js';
import { admitted, describe, type Plan } from './decision.js';
import { StoreUnavailableError } from './store.js';
import { estimate, rolled, rolledQuota } from './window.js';

export type LimitUsage = {
  name: string;
  kind: 'limit' | 'quota';
  /** requests allowed per window or period */
  limit: number;
  windowSec: number;
  /** counted in the current fixed window (a quota: in the period) */
  current: number;
  /** counted in the previous fixed window (0 for a quota) */
  previous: number;
  /** the sliding estimate of the last window, rounded down (a quota: `current`) */
  used: number;
  remaining: number;
  resetSec: number;
};

export type SubjectUsage = { tier: string; key: string; limits: LimitUsage[] };

export async function peekUsage(limiter: RateLimiter, tier: string, subject: string): Promise<SubjectUsage> {
  const plan = limiter.plans.get(tier) as Plan;
  const key = limiter.keyFor(tier, subject);
  const store = limiter.store.store;
  if (store.peek === undefined) throw new StoreUnavailableError('this store cannot be read');
  const counts = await store.peek(key, plan);
  const now = counts.now;
  const states = plan.limits.map((l, i) => rolled(counts.limits[i], l.windowMs, now));
  const quota = plan.quota ? rolledQuota(counts.quota, plan.quota.per, now) : null;
  const d = describe(plan, admitted(plan, states, quota, now), states, quota, now);
  const limits: LimitUsage[] = d.policies.map((p, i) => {
    const s = states[i];
    const l = plan.limits[i];
    const isLimit = p.kind === 'limit' && s !== undefined && l !== undefined;
    return {
      name: p.name,
      kind: p.kind,
      limit: p.quota,
      windowSec: p.windowSec,
      current: isLimit ? s.current : (quota?.used ?? 0),
      previous: isLimit ? s.previous : 0,
      used: isLimit ? Math.floor(estimate(s, l.windowMs, now)) : (quota?.used ?? 0),
      remaining: p.remaining,
      resetSec: p.resetSec,
    };
  });
  return { tier, key, limits };
}

export async function resetUsage(limiter: RateLimiter, tier: string, subject: string): Promise<void> {
  const plan = limiter.plans.get(tier) as Plan;
  const store = limiter.store.store;
  if (store.reset === undefined) throw new StoreUnavailableError('this store cannot be reset');
  await store.reset(limiter.keyFor(tier, subject), plan);
}
