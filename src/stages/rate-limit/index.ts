/**
 * Rate limiting: every limit and the quota of the caller's tier, checked and counted in one
 * store call (one Redis round trip). Consumers are limited by id and tier; anonymous callers
 * and `rateLimit: ip` routes by client IP (through trustedProxies) with the anonymous tier.
 */
import type { RequestContext } from '../context.js';
import { problem, type Problem } from '../../pipeline/problems.js';
import type { Stage, StageFactory, StageOutcome } from '../stage.js';
import type { Decision } from '../../ratelimit/decision.js';
import type { GuardedDecision } from '../../ratelimit/guarded-store.js';
import { appendRateLimitHeaders } from '../../ratelimit/headers.js';
import { effectiveRateLimit, type RateLimiter } from '../../ratelimit/limiter.js';
import type { DecisionResult } from '../../observability/metrics.js';

export const storeUnavailable = problem(
  503,
  'store_unavailable',
  'the rate-limit store is unavailable and this gateway is configured to refuse meanwhile',
  ['retry-after', '1'],
);

export const rateLimit: StageFactory = {
  name: 'rate-limit',
  compile(route, config, shared): Stage | null {
    const mode = effectiveRateLimit(route, config);
    const limiter = shared.rateLimiter;
    if (mode === 'off' || limiter === null) return null;
    const byConsumer = mode === 'tier';
    const noop = { inc: () => undefined };
    const counters = new Map<string, Record<DecisionResult, { inc(): void }>>();
    for (const tier of limiter.plans.keys()) {
      counters.set(
        tier,
        shared.metrics?.decisionCounter(tier) ?? {
          allowed: noop,
          rate_limited: noop,
          quota_exceeded: noop,
          fail_open: noop,
          fail_closed: noop,
        },
      );
    }
    const settle = (ctx: RequestContext, tier: string, d: GuardedDecision): StageOutcome => {
      const count = counters.get(tier);
      ctx.tier = tier;
      if (d === 'open') {
        count?.fail_open.inc();
        ctx.rateLimit = 'fail_open';
        return undefined;
      }
      if (d === 'closed') {
        count?.fail_closed.inc();
        ctx.rateLimit = 'fail_closed';
        return storeUnavailable;
      }
      count?.[d.outcome].inc();
      ctx.rateLimit = d.outcome;
      return apply(ctx, d, limiter);
    };
    return {
      name: 'rate-limit',
      run(ctx) {
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
    };
  },
};

export function apply(ctx: RequestContext, d: Decision, limiter: RateLimiter): Problem | undefined {
  const headers: string[] = [];
  appendRateLimitHeaders(headers, d, limiter.headers);
  if (d.outcome === 'allowed') {
    if (headers.length > 0) (ctx.extraResponseHeaders ??= []).push(...headers);
    return undefined;
  }
  headers.unshift('retry-after', String(d.retryAfterSec));
  if (d.outcome === 'quota_exceeded') {
    const quota = d.policies.find((p) => p.kind === 'quota');
    return problem(
      429,
      'quota_exceeded',
      `the ${quota?.name ?? ''} quota of this tier is used up; it renews in ${d.retryAfterSec} s`,
      headers,
    );
  }
  return problem(429, 'rate_limited', `too many requests; retry in ${d.retryAfterSec} s`, headers);
}
