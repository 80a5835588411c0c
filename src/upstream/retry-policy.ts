/**
 * When a failed upstream attempt may be tried again, and after how long. Pure functions plus a
 * retry budget; the proxy (proxy.ts) applies them. Retries are safe only for requests the
 * upstream may see twice: idempotent methods or an `Idempotency-Key`, and a body that was not
 * streamed yet (the proxy knows that).
 */
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

/** The compiled `retry` section of one service. */
export class RetryPolicy {
  readonly attempts: number;
  private readonly on: ReadonlySet<RetryReason>;
  private readonly budget: RollingWindow;

  constructor(
    readonly config: RetryConfig,
    /** monotonic by default: the budget's window is a duration */
    private readonly clock: () => number = () => performance.now(),
  ) {
    this.attempts = config.attempts;
    this.on = new Set(config.on);
    this.budget = new RollingWindow(10_000);
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
    this.budget.record(this.clock(), false);
  }

  /**
   * Takes one retry from the budget: retries in the last 10 s stay under `budget` × requests
   * (and may always reach `minRetries`), so retries cannot multiply the load of an outage.
   */
  takeRetry(): boolean {
    const now = this.clock();
    const { total, failed: retries } = this.budget.counts(now);
    const requests = total - retries;
    if (retries >= Math.max(this.config.minRetries, this.config.budget * requests)) return false;
    this.budget.record(now, true);
    return true;
  }

  /**
   * Full-jitter exponential backoff before retry number `retry` (1 = the first retry): uniform
   * between `backoff` and min(maxBackoff, backoff × 2^retry).
   */
  backoff(retry: number, random: number = Math.random()): number {
    const { backoff, maxBackoff } = this.config;
    const cap = Math.min(maxBackoff, backoff * 2 ** retry);
    return Math.round(backoff + random * Math.max(0, cap - backoff));
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
