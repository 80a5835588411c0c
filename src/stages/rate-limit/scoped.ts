/**
 * A route's own rate limiting (`rateLimit: { key, limits, mode }`): who is counted (the key),
 * against which limits (the route's own, else the caller's tier), under counters of this route
 * only, enforced or in shadow. Still one store call per request: a route with its own limits is
 * checked against those only (its tier's are neither checked nor counted on this route), so one
 * EVALSHA decides, as for a tier.
 *
 * Counter keys (subject.ts adds the prefix and hash tag): `~route.<route>` with the route's own
 * limits, `<tier>~route.<route>` with the tier's. Tier names have no `~`, route names no `%`
 * (a route name's `:` is written `%3a`), so neither meets a tier's key nor another route's.
 * Subjects: `c:<consumer id>`, `ip:<address>` (ratelimit/subject.ts), `h:<header value>`: a
 * forged header value can only ever name a counter of this route's header key.
 */
import type { DecisionResult } from '../../observability/metrics.js';
import type { RouteLimitSpec } from '../../ratelimit/config.js';
import type { GuardedDecision } from '../../ratelimit/guarded-store.js';
import { compilePlan, type RateLimiter } from '../../ratelimit/limiter.js';
import type { Plan } from '../../ratelimit/decision.js';
import type { GatewayMetrics } from '../../observability/metrics.js';
import type { RequestContext, RequestStage, StageOutcome } from '../stage.js';

export type Counters = Record<DecisionResult, { inc(): void }>;

const NOOP = { inc: (): void => undefined };
const NO_COUNTERS: Counters = Object.freeze({
  allowed: NOOP,
  rate_limited: NOOP,
  quota_exceeded: NOOP,
  fail_open: NOOP,
  fail_closed: NOOP,
  would_reject: NOOP,
});

/** The decision counters of one label, or counters that count nothing when metrics are off. */
export function decisionCounters(metrics: GatewayMetrics | null, label: string): Counters {
  return metrics?.decisionCounter(label) ?? NO_COUNTERS;
}

/** The counter scope of `route`'s own counters (`tier`: counted with the tier's limits). */
export function routeScope(route: string, tier: string | null): string {
  const name = `~route.${route.replaceAll(':', '%3a')}`;
  return tier === null ? name : tier + name;
}

/** The subject a request is counted as, by the route's key. */
export function scopedSubject(ctx: RequestContext, key: RouteLimitSpec['key'], limiter: RateLimiter): string {
  if (typeof key === 'object') {
    const value = ctx.req.headers[key.header];
    // a missing (or empty) header: the request is counted by its client address instead
    if (typeof value === 'string' && value !== '') return `h:${value}`;
    return limiter.ipSubject(ctx.clientIp);
  }
  const consumer = key === 'ip' ? null : ctx.consumer;
  return consumer !== null ? `c:${consumer.id}` : limiter.ipSubject(ctx.clientIp);
}

export type ScopedSettle = (
  ctx: RequestContext,
  tier: string,
  d: GuardedDecision,
  counters: Counters | undefined,
) => StageOutcome;

export function createScopedLimit(
  spec: RouteLimitSpec,
  route: string,
  limiter: RateLimiter,
  metrics: GatewayMetrics | null,
  enforce: ScopedSettle,
  shadow: ScopedSettle,
): RequestStage['onRequest'] {
  const counterFor = (label: string): Counters => decisionCounters(metrics, label);
  const settle = spec.shadow ? shadow : enforce;
  const key = spec.key;
  if (spec.limits !== null) {
    // the route's own limits: one plan, one scope; counted under the label `route:<name>`
    const label = `route:${route}`;
    const plan: Plan = compilePlan(label, { limits: spec.limits });
    const scope = routeScope(route, null);
    const counters = counterFor(label);
    return (ctx) => {
      const result = limiter.store.consume(limiter.keyFor(scope, scopedSubject(ctx, key, limiter)), plan);
      return result instanceof Promise
        ? result.then((d) => settle(ctx, label, d, counters))
        : settle(ctx, label, result, counters);
    };
  }
  // the tier's limits, counted for this route only
  const scopes = new Map<string, { scope: string; plan: Plan; counters: Counters }>();
  for (const [tier, plan] of limiter.plans)
    scopes.set(tier, { scope: routeScope(route, tier), plan, counters: counterFor(tier) });
  const byConsumer = key === 'route+consumer';
  return (ctx) => {
    const consumer = byConsumer ? ctx.consumer : null;
    let tier = limiter.anonymousTier;
    if (consumer !== null)
      tier = consumer.tier !== '' && limiter.plans.has(consumer.tier) ? consumer.tier : limiter.defaultTier;
    const scoped = scopes.get(tier);
    if (scoped === undefined) return undefined; // checked at load: the tiers used exist
    const result = limiter.store.consume(
      limiter.keyFor(scoped.scope, scopedSubject(ctx, key, limiter)),
      scoped.plan,
    );
    return result instanceof Promise
      ? result.then((d) => settle(ctx, tier, d, scoped.counters))
      : settle(ctx, tier, result, scoped.counters);
  };
}
