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
import type { RequestContext } from '../context.js';
import { problem, type Problem } from '../../pipeline/problems.js';
import type { Stage, StageFactory, StageOutcome } from '../stage.js';
import type { GuardedDecision } from '../../ratelimit/guarded-store.js';
import { UNAUTHENTICATED_TIER, type RateLimiter } from '../../ratelimit/limiter.js';
import { apply } from './index.js';

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
export function limitFailedAuthentication(authenticate: StageFactory): StageFactory {
  return {
    name: authenticate.name,
    compile(route, config, shared): Stage | null {
      const inner = authenticate.compile(route, config, shared);
      const limiter = shared.rateLimiter;
      const plan = limiter?.unauthenticated ?? null;
      if (inner === null || limiter === null || plan === null) return inner;
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
        ctx.tier = UNAUTHENTICATED_TIER;
        ctx.rateLimit = d.outcome;
        return apply(ctx, d, limiter);
      };
      const counted = (ctx: RequestContext, subject: string, outcome: StageOutcome) => {
        // only missing or invalid credentials count (not a key store that is down: 503)
        if (outcome === undefined || outcome.status !== 401) return outcome;
        const d = limiter.store.consume(limiter.keyFor(UNAUTHENTICATED_TIER, subject), plan);
        return d instanceof Promise
          ? d.then((x) => settle(ctx, subject, outcome, x))
          : settle(ctx, subject, outcome, d);
      };
      return {
        name: inner.name,
        run(ctx) {
          const subject = limiter.ipSubject(ctx.clientIp);
          const waitMs = addresses.remainingMs(subject);
          if (waitMs > 0) {
            const retryAfter = String(Math.max(1, Math.ceil(waitMs / 1000)));
            ctx.tier = UNAUTHENTICATED_TIER;
            ctx.rateLimit = 'rate_limited';
            return problem(
              429,
              'rate_limited',
              `too many failed authentications from this address; retry in ${retryAfter} s`,
              ['retry-after', retryAfter],
            );
          }
          const outcome = inner.run(ctx);
          return outcome instanceof Promise
            ? outcome.then((o) => counted(ctx, subject, o))
            : counted(ctx, subject, outcome);
        },
      };
    },
  };
}
