/**
 * When a failed upstream attempt may be tried again, and after how long: `decide`, a pure
 * function of the attempt and of everything it depends on (the time, the deadline, the budget's
 * and the breaker's answers, the jitter), so every branch is tested without a socket or a sleep.
 * The budget itself is the one piece of state here; attempts.ts applies the decision. Retries are
 * safe only for requests the upstream may see twice: idempotent methods or an `Idempotency-Key`,
 * and a body that was not streamed yet.
 */
import { systemClock, type Clock } from '../clock.js';
import type { IncomingHttpHeaders } from 'node:http';
import type { RetryConfig } from '../config/schema.js';
import type { UpstreamFailure } from './errors.js';
import { RollingWindow } from './rolling-window.js';

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

/**
 * The request's headers are read only for other methods: node builds `req.headers` on first use,
 * which an idempotent request need not pay for.
 */
export function isIdempotent(method: string, req: { readonly headers: IncomingHttpHeaders }): boolean {
  if (IDEMPOTENT.has(method)) return true;
  const key = req.headers['idempotency-key'];
  return typeof key === 'string' && key !== '';
}

/** What of an attempt's outcome `retry.on` can name: a failure kind or a status. */
export type RetryReason = 'connect-error' | 'timeout' | 'reset' | number;

/** The `retry.on` entry an upstream failure falls under (null: never retried). */
export function retryReasonOf(failure: UpstreamFailure): RetryReason | null {
  switch (failure) {
    case 'connect-error':
    case 'connect-timeout':
      return 'connect-error';
    case 'timeout':
      return 'timeout';
    case 'reset':
    case 'protocol':
      return 'reset';
    default:
      return null;
  }
}

/** Why a failed attempt is not tried again. */
export type SkipReason =
  | 'not_idempotent'
  | 'attempts'
  | 'not_on'
  | 'client_gone'
  | 'body_read'
  // the four counted in gatehouse_retries_skipped_total{reason}
  | 'retry_after'
  | 'deadline'
  | 'budget'
  | 'breaker';

export type RetryDecision = { readonly delayMs: number } | { readonly skip: SkipReason };

/** What `decide` reads of a service's retry settings (a RetryPolicy). */
export interface RetryRules {
  readonly attempts: number;
  readonly config: Pick<RetryConfig, 'backoff' | 'maxBackoff' | 'maxRetryAfter'>;
  retriesOn(reason: RetryReason): boolean;
}

/** One failed attempt, and what a retry of it would depend on. */
export type RetryInput = {
  /** attempts made so far (1 after the first) */
  readonly attempt: number;
  readonly reason: RetryReason;
  /** the upstream's Retry-After in ms; null when it sent none */
  readonly retryAfter: number | null;
  /** monotonic ms */
  readonly now: number;
  /** monotonic ms after which no attempt starts */
  readonly deadline: number;
  /** the upstream may see the request twice: an idempotent method or an Idempotency-Key */
  readonly idempotent: boolean;
  readonly clientGone: boolean;
  /** some of the request body was read already: it cannot be sent again */
  readonly bodyRead: boolean;
  /** the retry budget has one more retry now */
  readonly budgetLeft: boolean;
  /** the circuit breaker would admit one more attempt now */
  readonly breakerAdmits: boolean;
  /** the jitter's source, uniform in [0, 1); called only when a backoff is computed */
  readonly random: () => number;
};

const skip = (reason: SkipReason): RetryDecision => Object.freeze({ skip: reason });
const SKIP = {
  not_idempotent: skip('not_idempotent'),
  attempts: skip('attempts'),
  not_on: skip('not_on'),
  client_gone: skip('client_gone'),
  body_read: skip('body_read'),
  retry_after: skip('retry_after'),
  deadline: skip('deadline'),
  budget: skip('budget'),
  breaker: skip('breaker'),
} as const;

/**
 * Whether to retry, and after how many ms. The checks run in this order, and the first that fails
 * names the skip: the request may be repeated (any request may after `connect-error`: it was never
 * sent), attempts are left, `retry.on` names the reason, the
 * client is still there, no byte of the body was read, the upstream's Retry-After is within
 * `maxRetryAfter`, the wait (the backoff, or the Retry-After when longer) ends before the
 * deadline, the budget has a retry, and the breaker admits one.
 */
export function decide(rules: RetryRules, input: RetryInput): RetryDecision {
  // a connection that could not be opened carried nothing: the target never saw the request, so
  // even a POST may go to another target (the body check below still applies)
  if (!input.idempotent && input.reason !== 'connect-error') return SKIP.not_idempotent;
  if (input.attempt >= rules.attempts) return SKIP.attempts;
  if (!rules.retriesOn(input.reason)) return SKIP.not_on;
  if (input.clientGone) return SKIP.client_gone;
  if (input.bodyRead) return SKIP.body_read;
  const retryAfter = input.retryAfter;
  if (retryAfter !== null && retryAfter > rules.config.maxRetryAfter) return SKIP.retry_after;
  let delayMs = backoff(rules.config, input.attempt, input.random());
  if (retryAfter !== null && retryAfter > delayMs) delayMs = retryAfter;
  if (input.now + delayMs >= input.deadline) return SKIP.deadline;
  if (!input.budgetLeft) return SKIP.budget;
  if (!input.breakerAdmits) return SKIP.breaker;
  return { delayMs };
}

/**
 * Full-jitter exponential backoff before retry number `retry` (1 = the first retry): uniform
 * between `backoff` and min(maxBackoff, backoff × 2^retry).
 */
export function backoff(
  config: Pick<RetryConfig, 'backoff' | 'maxBackoff'>,
  retry: number,
  random: number,
): number {
  const cap = Math.min(config.maxBackoff, config.backoff * 2 ** retry);
  return Math.round(config.backoff + random * Math.max(0, cap - config.backoff));
}

/** The compiled `retry` section of one service, with its budget. */
export class RetryPolicy implements RetryRules {
  readonly attempts: number;
  private readonly on: ReadonlySet<RetryReason>;
  private readonly budget: RollingWindow;

  constructor(
    readonly config: RetryConfig,
    /** monotonic by default: the budget's window is a duration */
    private readonly clock: Clock = systemClock,
    /** the jitter's source */
    readonly random: () => number = Math.random,
    /** the budget's window: a new one, or the service's that a route's own rules share */
    budget: RollingWindow = new RollingWindow(10_000),
  ) {
    this.attempts = config.attempts;
    this.on = new Set(config.on);
    this.budget = budget;
  }

  /**
   * A route's own retry rules over this service: its settings replace these, the budget stays
   * this one (retries through every route of a service count against one budget).
   */
  withRules(overrides: Partial<RetryConfig>): RetryPolicy {
    return new RetryPolicy({ ...this.config, ...overrides }, this.clock, this.random, this.budget);
  }

  retriesOn(reason: RetryReason): boolean {
    return this.on.has(reason);
  }

  /** retry.on names this status */
  retriesStatus(status: number): boolean {
    return status >= 500 && this.on.has(status);
  }

  /** Counts a first attempt toward the budget's base. */
  countRequest(): void {
    this.budget.record(this.clock.now(), false);
  }

  /**
   * Takes one retry from the budget: retries in the last 10 s stay under `budget` × requests
   * (and may always reach `minRetries`), so retries cannot multiply the load of an outage.
   */
  takeRetry(): boolean {
    if (!this.budgetLeft()) return false;
    this.recordRetry();
    return true;
  }

  /** the budget has one more retry now (nothing is taken) */
  budgetLeft(): boolean {
    const { total, failed: retries } = this.budget.counts(this.clock.now());
    const requests = total - retries;
    return retries < Math.max(this.config.minRetries, this.config.budget * requests);
  }

  /** Counts a retry against the budget (once `decide` said yes). */
  recordRetry(): void {
    this.budget.record(this.clock.now(), true);
  }

  /** the backoff before retry number `retry`, with `random` as the jitter (the policy's own by default) */
  backoff(retry: number, random: number = this.random()): number {
    return backoff(this.config, retry, random);
  }
}

/**
 * An upstream's Retry-After in milliseconds (delta-seconds or an HTTP date), or null when
 * absent or unreadable.
 */
export function parseRetryAfter(value: string | undefined, now: number = Date.now()): number | null {
  if (value === undefined) return null;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  // an HTTP date names its month; Date.parse alone would take "-1" or "1.5" for dates
  if (!/[A-Za-z]{3}/.test(v)) return null;
  const date = Date.parse(v);
  if (Number.isNaN(date)) return null;
  return Math.max(0, date - now);
}

/** The Retry-After of an upstream answer's raw head, in milliseconds (null when absent or unreadable). */
export function retryAfterOf(raw: readonly Buffer[]): number | null {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as Buffer;
    if (name.length === 11 && name.toString('latin1').toLowerCase() === 'retry-after') {
      return parseRetryAfter((raw[i + 1] as Buffer).toString('latin1'));
    }
  }
  return null;
}
