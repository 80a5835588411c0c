/**
 * `rateLimit.unauthenticated`: a limit on failed authentications per client address (IPv6 by
 * its network, `rateLimit.ipv6Prefix`), so a flood of bad or missing credentials is limited
 * too, not only callers who authenticate.
 *
 * It wraps the authenticate stage, and counts only failures: a request whose authentication
 * fails (401) is counted in the store (one round trip: it has no other, since it ends here); a
 * request that authenticates costs nothing more (its one round trip is the rate-limit stage's).
 * When a failure is refused by the limit, the answer is 429 instead of 401, and this process
 * remembers the address as refused until the decision's Retry-After: meanwhile its requests are
 * answered 429 before their credentials are checked (no key lookup, no signature check, no
 * round trip), valid credentials included, as a flood from that address must be refused
 * whatever it sends. A refused request counts nothing.
 */
import { problem, type Problem } from '../../problems/registry.js';
import type { GuardedDecision } from '../../ratelimit/guarded-store.js';
import { UNAUTHENTICATED_TIER, type RateLimiter } from '../../ratelimit/limiter.js';
import {
  Reply,
  type RequestContext,
  type RequestStage,
  type Stage,
  type StageInstance,
  type StageOutcome,
} from '../stage.js';
import { apply, DECISION, logRateLimit, RATE_LIMITER, TIER } from './index.js';

/** addresses remembered as refused, per process; the oldest is forgotten beyond this */
export const MAX_REFUSED_ADDRESSES = 10_000;

/** Addresses over their limit, until when (ms, `now`'s clock). One per rate-limit store. */
export class RefusedAddresses {
  private readonly until = new Map<string, number>();

  constructor(
    // monotonic: a wall-clock step must neither lift nor stretch a refusal
    private readonly now: () => number = () => performance.now(),
    private readonly max = MAX_REFUSED_ADDRESSES,
  ) {}

  /** ms left while `subject` is refused, else 0 */
  remainingMs(subject: string): number {
    const until = this.until.get(subject);
    if (until === undefined) return 0;
    const left = until - this.now();
    if (left > 0) return left;
    this.until.delete(subject);
    return 0;
  }

  refuse(subject: string, forMs: number): void {
    this.until.delete(subject); // re-inserted last: the map's order is the age
    if (this.until.size >= this.max) {
      const oldest = this.until.keys().next().value;
      if (oldest !== undefined) this.until.delete(oldest);
    }
    this.until.set(subject, this.now() + forMs);
  }

  get size(): number {
    return this.until.size;
  }
}

/** per store: the store (and its counters) outlives reloads that keep its settings, so do these */
const refusedByStore = new WeakMap<RateLimiter['store'], RefusedAddresses>();

/** The authenticate stage, with failed authentications limited per address. */
export function limitFailedAuthentication(authenticate: Stage): Stage {
  return {
    name: authenticate.name,
    order: authenticate.order,
    build(route, config, deps): StageInstance | null {
      const inner = authenticate.build(route, config, deps);
      const limiter = deps.get(RATE_LIMITER);
      const plan = limiter?.unauthenticated ?? null;
      if (inner?.onRequest === undefined || limiter === null || plan === null) return inner;
      const authenticated = inner as RequestStage;
      let refused = refusedByStore.get(limiter.store);
      if (refused === undefined) {
        refused = new RefusedAddresses();
        refusedByStore.set(limiter.store, refused);
      }
      const addresses = refused;
      const settle = (
        ctx: RequestContext,
        subject: string,
        failure: Problem,
        d: GuardedDecision,
      ): StageOutcome => {
        // the store is down: the request is refused anyway (401), whatever the policy
        if (d === 'open' || d === 'closed') return failure;
        if (d.outcome === 'allowed') return failure;
        addresses.refuse(subject, d.retryAfterSec * 1000);
        ctx.set(TIER, UNAUTHENTICATED_TIER);
        ctx.set(DECISION, d.outcome);
        return apply(ctx, d, limiter);
      };
      const counted = (ctx: RequestContext, subject: string, outcome: StageOutcome) => {
        // only missing or invalid credentials count (not a key store that is down: 503)
        if (outcome === undefined || outcome instanceof Reply || outcome.status !== 401) return outcome;
        const d = limiter.store.consume(limiter.keyFor(UNAUTHENTICATED_TIER, subject), plan);
        return d instanceof Promise
          ? d.then((x) => settle(ctx, subject, outcome, x))
          : settle(ctx, subject, outcome, d);
      };
      // (authentication writes no response headers: only its request and log halves are wrapped)
      return {
        onRequest(ctx) {
          const subject = limiter.ipSubject(ctx.clientIp);
          const waitMs = addresses.remainingMs(subject);
          if (waitMs > 0) {
            const retryAfter = String(Math.max(1, Math.ceil(waitMs / 1000)));
            ctx.set(TIER, UNAUTHENTICATED_TIER);
            ctx.set(DECISION, 'rate_limited');
            return problem(
              'rate_limited',
              `too many failed authentications from this address; retry in ${retryAfter} s`,
              ['retry-after', retryAfter],
            );
          }
          const outcome = authenticated.onRequest(ctx);
          return outcome instanceof Promise
            ? outcome.then((o) => counted(ctx, subject, o))
            : counted(ctx, subject, outcome);
        },
        onLog(ctx, record) {
          inner.onLog?.(ctx, record);
          logRateLimit(ctx, record);
        },
        close: () => inner.close?.(),
      };
    },
  };
}
