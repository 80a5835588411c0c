/**
 * Rate limiting: every limit and the quota of the caller's tier, checked and counted in one
 * store call (one Redis round trip). Consumers are limited by id and tier; anonymous callers
 * and `rateLimit: ip` routes by client IP (through trustedProxies) with the anonymous tier.
 */
import type { AccessRecord } from '../../observability/access-log/index.js';
import type { DecisionResult } from '../../observability/metrics.js';
import { problem, type Problem } from '../../problems/registry.js';
import type { Decision } from '../../ratelimit/decision.js';
import type { GuardedDecision } from '../../ratelimit/guarded-store.js';
import { appendRateLimitHeaders } from '../../ratelimit/headers.js';
import type { RouteLimitSpec } from '../../ratelimit/config.js';
import { effectiveRateLimit, type RateLimiter } from '../../ratelimit/limiter.js';
import { METRICS } from '../metrics.js';
import { defineStage, Dependency, ScratchKey, type RequestContext, type StageOutcome } from '../stage.js';
import { createScopedLimit, decisionCounters, type Counters } from './scoped.js';

/** The runtime's rate limiter (null when no route is rate limited). */
export const RATE_LIMITER = new Dependency<RateLimiter | null>('rateLimiter');

/** the tier the request was counted under, and the decision (access log) */
export const TIER = new ScratchKey<string>('rate-limit.tier');
export const DECISION = new ScratchKey<DecisionResult>('rate-limit.decision');
/** the RateLimit headers of an admitted request, for its response */
const HEADERS = new ScratchKey<readonly string[]>('rate-limit.headers');

/** The access-log fields of a request the limiter counted (or refused). */
export function logRateLimit(ctx: RequestContext, record: AccessRecord): void {
  const tier = ctx.get(TIER);
  if (tier === undefined) return;
  record.tier = tier;
  record.rateLimit = ctx.get(DECISION) ?? null;
}

export const storeUnavailable = problem(
  'store_unavailable',
  'the rate-limit store is unavailable and this gateway is configured to refuse meanwhile',
  ['retry-after', '1'],
);

export const rateLimit = defineStage<'ip' | 'tier' | RouteLimitSpec>({
  name: 'rate-limit',
  order: 400,
  section(route, config) {
    const mode = effectiveRateLimit(route, config);
    return mode === 'off' ? null : mode;
  },
  create(mode, deps, route) {
    const limiter = deps.get(RATE_LIMITER);
    const metrics = deps.get(METRICS);
    if (limiter === null) return null; // built whenever a route is rate limited
    if (typeof mode === 'object') {
      // the route's own key, limits or mode (scoped.ts)
      const enforce = (ctx: RequestContext, tier: string, d: GuardedDecision, count?: Counters) =>
        settleWith(ctx, tier, d, count, limiter);
      return {
        onRequest: createScopedLimit(mode, route.name, limiter, metrics, enforce, settleShadow),
        onResponseHeaders(ctx, headers) {
          const own = ctx.get(HEADERS);
          if (own !== undefined) replaceHeaders(headers, own);
        },
        onLog: logRateLimit,
      };
    }

    const byConsumer = mode === 'tier';
    const counters = new Map<string, Counters>();
    for (const tier of limiter.plans.keys()) counters.set(tier, decisionCounters(metrics, tier));
    const settle = (ctx: RequestContext, tier: string, d: GuardedDecision): StageOutcome =>
      settleWith(ctx, tier, d, counters.get(tier), limiter);
    return {
      onRequest(ctx) {
        const consumer = byConsumer ? ctx.consumer : null;
        let tier = limiter.anonymousTier;
        let subject: string;
        if (consumer !== null) {
          tier =
            consumer.tier !== '' && limiter.plans.has(consumer.tier) ? consumer.tier : limiter.defaultTier;
          subject = `c:${consumer.id}`;
        } else subject = limiter.ipSubject(ctx.clientIp);
        const plan = limiter.plans.get(tier);
        if (plan === undefined) return undefined; // checked at load: the tiers used exist
        const result = limiter.store.consume(limiter.keyFor(tier, subject), plan);
        return result instanceof Promise
          ? result.then((d) => settle(ctx, tier, d))
          : settle(ctx, tier, result);
      },
      onResponseHeaders(ctx, headers) {
        const own = ctx.get(HEADERS);
        if (own !== undefined) replaceHeaders(headers, own);
      },
      onLog: logRateLimit,
    };
  },
});

/** An enforced decision: counted, recorded for the access log, the request refused or let through. */
function settleWith(
  ctx: RequestContext,
  tier: string,
  d: GuardedDecision,
  count: Counters | undefined,
  limiter: RateLimiter,
): StageOutcome {
  ctx.set(TIER, tier);
  if (d === 'open') {
    count?.fail_open.inc();
    ctx.set(DECISION, 'fail_open');
    return undefined;
  }
  if (d === 'closed') {
    count?.fail_closed.inc();
    ctx.set(DECISION, 'fail_closed');
    return storeUnavailable;
  }
  count?.[d.outcome].inc();
  ctx.set(DECISION, d.outcome);
  return apply(ctx, d, limiter);
}

/**
 * A shadow decision: counted and recorded as it would have been (a refusal as `would_reject`),
 * but the request always goes on, and the client sees no rate-limit header: a limit being tried
 * out must not change what clients get.
 */
function settleShadow(ctx: RequestContext, tier: string, d: GuardedDecision, count?: Counters): StageOutcome {
  ctx.set(TIER, tier);
  const result: DecisionResult =
    d === 'open'
      ? 'fail_open'
      : d === 'closed'
        ? 'fail_closed'
        : d.outcome === 'allowed'
          ? 'allowed'
          : 'would_reject';
  count?.[result].inc();
  ctx.set(DECISION, result);
  return undefined;
}

export function apply(ctx: RequestContext, d: Decision, limiter: RateLimiter): Problem | undefined {
  const headers: string[] = [];
  appendRateLimitHeaders(headers, d, limiter.headers);
  if (d.outcome === 'allowed') {
    if (headers.length > 0) ctx.set(HEADERS, headers);
    return undefined;
  }
  headers.unshift('retry-after', String(d.retryAfterSec));
  if (d.outcome === 'quota_exceeded') {
    const quota = d.policies.find((p) => p.kind === 'quota');
    return problem(
      'quota_exceeded',
      `the ${quota?.name ?? ''} quota of this tier is used up; it renews in ${d.retryAfterSec} s`,
      headers,
    );
  }
  return problem('rate_limited', `too many requests; retry in ${d.retryAfterSec} s`, headers);
}

/**
 * Adds the gateway's own response headers (the RateLimit ones) in place of any the upstream sent
 * under the same names, so the client never sees two conflicting copies.
 */
function replaceHeaders(headers: string[], own: readonly string[]): void {
  for (let i = headers.length - 2; i >= 0; i -= 2) {
    const raw = headers[i] as string;
    for (let j = 0; j < own.length; j += 2) {
      // lower-cased only when the length matches: most upstream headers are no rate-limit header
      if ((own[j] as string).length === raw.length && own[j] === raw.toLowerCase()) {
        headers.splice(i, 2);
        break;
      }
    }
  }
  for (let i = 0; i < own.length; i++) headers.push(own[i] as string);
}
