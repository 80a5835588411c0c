/**
 * The bookkeeping of one request's attempts on a service, apart from the response they stream:
 * which target each went to, under which breaker admission, for how long, and the admission a
 * retry holds while it waits. Every admission goes back to the breaker exactly once: as the
 * attempt's outcome (`end`), or cancelled (`release`, or no target to send it to). Whether to retry
 * is `decide`'s (retry-policy.ts); this applies it: the metrics, the budget, the admission.
 */
import { REJECTED } from './circuit-breaker.js';
import type { UpstreamFailure } from './errors.js';
import { decide, type RetryPolicy, type RetryReason, type SkipReason } from './retry-policy.js';
import type { Service } from './service.js';
import type { Target } from './target.js';

const NONE = -1;

/** the skips that gatehouse_retries_skipped_total counts */
function counted(skip: SkipReason): skip is 'budget' | 'deadline' | 'breaker' | 'retry_after' {
  return skip === 'budget' || skip === 'deadline' || skip === 'breaker' || skip === 'retry_after';
}

export class Attempts {
  private target: Target | null = null;
  private generation = 0;
  private startedAt = 0;
  /** targets already tried (only allocated once a retryable attempt ended) */
  private tried: Target[] | null = null;
  /** the breaker's admission held for the retry that waits; NONE: no retry waits */
  private held = NONE;

  constructor(
    private readonly service: Service,
    /** the service's retry policy, or the route's over it (same budget) */
    private readonly policy: RetryPolicy,
    /** the upstream may see the request twice (method or Idempotency-Key), and retries are on */
    private readonly retryable: boolean,
    /** monotonic ms (the service's clock) after which no attempt starts or waits for headers */
    private readonly deadline: number,
  ) {}

  /** ms left before the deadline */
  remaining(): number {
    return this.deadline - this.service.clock.now();
  }

  /**
   * Starts an attempt admitted as `generation` on the target the balancer picks, avoiding those
   * tried; null when the service has no target (the admission is given back).
   */
  begin(generation: number): Target | null {
    const target = this.service.pick(this.tried);
    if (target === null) {
      this.service.breaker.record(generation, 'cancelled');
      return null;
    }
    this.target = target;
    this.generation = generation;
    this.startedAt = this.service.clock.now();
    target.inflight++;
    return target;
  }

  /** Reports how the running attempt ended (once); its duration in ms, or -1 when none was running. */
  end(failure: UpstreamFailure | null, status: number): number {
    const target = this.target;
    if (target === null) return -1;
    this.target = null;
    const ms = this.service.clock.now() - this.startedAt;
    this.service.finish(target, this.generation, failure, status, ms / 1000);
    if (this.retryable) (this.tried ??= []).push(target);
    return ms;
  }

  /**
   * The ms to wait before retrying the attempt number `attempt` that failed for `reason`, or -1
   * when it is not retried. A retry takes its place in the budget and its breaker admission now
   * (held until `takeHeld` or `release`), so a breaker this failure opened refuses it.
   */
  retryDelay(
    attempt: number,
    reason: RetryReason,
    retryAfter: number | null,
    clientGone: boolean,
    bodyRead: boolean,
  ): number {
    const { breaker, metrics } = this.service;
    const policy = this.policy;
    const decision = decide(policy, {
      attempt,
      reason,
      retryAfter,
      now: this.service.clock.now(),
      deadline: this.deadline,
      idempotent: this.retryable,
      clientGone,
      bodyRead,
      budgetLeft: policy.budgetLeft(),
      breakerAdmits: breaker.wouldAdmit(),
      random: policy.random,
    });
    if ('skip' in decision) {
      if (counted(decision.skip)) metrics.retrySkipped(decision.skip);
      return -1;
    }
    policy.recordRetry();
    // wouldAdmit said yes in this same turn, so this admits; the check keeps the accounting exact
    const generation = breaker.admit();
    if (generation === REJECTED) {
      metrics.retrySkipped('breaker');
      return -1;
    }
    this.held = generation;
    metrics.retry(String(reason));
    return decision.delayMs;
  }

  /** The admission held for the retry that starts now. */
  takeHeld(): number {
    const generation = this.held;
    this.held = NONE;
    return generation;
  }

  /** The retry that waits will not happen: its admission goes back (a half-open breaker's probe slot). */
  release(): void {
    if (this.held === NONE) return;
    this.service.breaker.record(this.held, 'cancelled');
    this.held = NONE;
  }
}
