/**
 * The shared store behind a failure policy. Every call is bounded by the Redis timeout; after a
 * failure a breaker skips Redis for a while (250 ms, doubling after each failed probe up to 5 s)
 * so a dead Redis does not cost each request its timeout. When the open period ends one probe
 * goes to the store: a background PING when the store offers one (so a gateway nobody sends
 * traffic to, e.g. one taken out of rotation by a failing /readyz, still recovers), otherwise
 * the next request. While a probe is in flight every other request is decided by the policy.
 * While degraded: `open` admits, `closed` refuses (503 store_unavailable), `local` counts in
 * this process. Entering and leaving degraded mode is logged once each (warn / info) and counted.
 */
import type { Logger } from '../observability/logger.js';
import type { Decision, Plan } from './decision.js';
import { MemoryStore, type MemoryStoreOptions } from './memory-store.js';
import type { RateLimitStore } from './store.js';

export type FailurePolicy = 'open' | 'closed' | 'local';

export type GuardedDecision = Decision | 'open' | 'closed';

export const MIN_OPEN_MS = 250;
export const MAX_OPEN_MS = 5000;

export type GuardOptions = {
  /** the breaker's clock (tests inject one) */
  now?: () => number;
  /** a cheap round trip to the shared store (PING), run in the background while degraded */
  probe?: () => Promise<unknown>;
  /**
   * How long a call may take (`redis.timeout`). Late only if no reply has arrived by then: when
   * the timer fires, replies that came in while this process was busy (a burst, a GC pause)
   * are read first, so a stalled event loop does not pass for a stalled Redis.
   */
  timeoutMs?: number;
  /** where failures and degraded decisions are counted (Prometheus, see observability/metrics.ts) */
  metrics?: GuardMetrics;
  /** the `local` fallback's bound and eviction counter (rateLimit.memory) */
  local?: MemoryStoreOptions;
};

export type GuardMetrics = {
  storeError(): void;
  degradedDecision(): void;
  degraded(on: boolean): void;
};

/** A call to the store that took longer than `timeoutMs`. */
export class StoreTimeoutError extends Error {
  constructor(ms: number) {
    super(`no answer within ${ms} ms`);
  }
}

export class GuardedStore {
  /** requests decided by the failure policy instead of the shared store */
  degradedDecisions = 0;
  /** calls to the shared store (requests and probes) that failed */
  storeErrors = 0;
  /** times the breaker tripped (entered degraded mode) */
  trips = 0;
  private degraded = false;
  private openUntil = 0;
  private openMs = MIN_OPEN_MS;
  private probing = false;
  /** false after a recovery seen only by a PING: until a real call succeeds, a new trip keeps
   *  the open period growing (a Cluster whose one node is down answers PING elsewhere) */
  private confirmed = true;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private local: MemoryStore | null = null;
  private readonly now: () => number;
  private readonly probe: (() => Promise<unknown>) | undefined;
  private readonly timeoutMs: number | undefined;
  private readonly metrics: GuardMetrics | undefined;
  private readonly localOptions: MemoryStoreOptions | undefined;

  constructor(
    readonly store: RateLimitStore,
    readonly policy: FailurePolicy,
    private readonly logger: Logger,
    options: GuardOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.probe = options.probe;
    this.timeoutMs = options.timeoutMs;
    this.metrics = options.metrics;
    this.localOptions = options.local;
  }

  get isDegraded(): boolean {
    return this.degraded;
  }

  /** ms the breaker stays open after the current (or next) failure */
  get openPeriodMs(): number {
    return this.openMs;
  }

  consume(key: string, plan: Plan): Promise<GuardedDecision> | GuardedDecision {
    // an in-process store cannot fail: decide synchronously, no promise, no timer
    if (this.store instanceof MemoryStore) return this.store.consumeSync(key, plan);
    let probe = false;
    if (this.degraded) {
      if (this.probing || this.now() < this.openUntil) return this.fallback(key, plan);
      this.probing = probe = true;
    }
    return this.bounded(this.store.consume(key, plan)).then(
      (decision) => {
        if (probe) this.probing = false;
        this.confirmed = true;
        if (this.degraded) this.recover();
        return decision;
      },
      (err: unknown) => {
        this.storeErrors++;
        this.metrics?.storeError();
        this.failed(err, probe);
        return this.fallback(key, plan);
      },
    );
  }

  /**
   * The store is known to be unreachable (at start) or known to be back (its connection is
   * ready again): `unavailable` trips the breaker, `available` ends the open period at once.
   */
  hint(state: 'unavailable' | 'available', reason = 'not reachable'): void {
    if (this.closed) return;
    if (state === 'unavailable') {
      if (!this.degraded) this.failed(new Error(reason), false);
      return;
    }
    if (!this.degraded || this.probing) return;
    this.openUntil = this.now();
    if (this.probe) this.backgroundProbe();
  }

  private fallback(key: string, plan: Plan): GuardedDecision {
    this.degradedDecisions++;
    this.metrics?.degradedDecision();
    if (this.policy === 'local')
      return (this.local ??= new MemoryStore(this.now, this.localOptions)).consumeSync(key, plan);
    return this.policy;
  }

  /**
   * A call to the store failed. The first failure opens the breaker; a failed probe doubles the
   * open period. Requests that were already in flight when the breaker opened and fail as well
   * change nothing: one outage costs one trip, however many requests were waiting on it.
   */
  private failed(err: unknown, probe: boolean): void {
    if (probe) this.probing = false;
    if (!this.degraded) {
      this.degraded = true;
      this.trips++;
      this.metrics?.degraded(true);
      this.openMs = this.confirmed ? MIN_OPEN_MS : Math.min(this.openMs * 2, MAX_OPEN_MS);
      this.logger.warn(
        {
          store: this.store.kind,
          policy: this.policy,
          err: err instanceof Error ? err.message : String(err),
        },
        'rate-limit store unavailable: degraded mode',
      );
    } else if (probe) {
      this.openMs = Math.min(this.openMs * 2, MAX_OPEN_MS);
    } else return;
    this.openUntil = this.now() + this.openMs;
    this.schedule();
  }

  private recover(): void {
    this.degraded = false;
    this.metrics?.degraded(false);
    this.probing = false;
    if (this.confirmed) this.openMs = MIN_OPEN_MS;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.logger.info(
      { store: this.store.kind, degradedDecisions: this.degradedDecisions },
      'rate-limit store recovered',
    );
  }

  private schedule(): void {
    if (this.probe === undefined || this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.backgroundProbe(), Math.max(0, this.openUntil - this.now()));
    this.timer.unref();
  }

  private backgroundProbe(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const probe = this.probe;
    if (probe === undefined || this.closed || !this.degraded || this.probing) return;
    this.probing = true;
    this.bounded(probe()).then(
      () => {
        this.probing = false;
        if (this.degraded && !this.closed) {
          this.confirmed = false;
          this.recover();
        }
      },
      (err: unknown) => {
        this.storeErrors++;
        this.metrics?.storeError();
        if (!this.closed) this.failed(err, true);
        else this.probing = false;
      },
    );
  }

  /**
   * `call`, failing after `timeoutMs`. The check runs in a setImmediate after the timer: in
   * that turn of the event loop the poll phase (reading sockets) comes between the two, so a
   * reply already received is taken even if the loop was blocked past the deadline.
   */
  private bounded<T>(call: Promise<T>): Promise<T> {
    const ms = this.timeoutMs;
    if (ms === undefined) return call;
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const timer = setTimeout(
        () =>
          setImmediate(() => {
            if (done) return;
            done = true;
            reject(new StoreTimeoutError(ms));
          }),
        ms,
      );
      call.then(
        (value) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          resolve(value);
        },
        (err: unknown) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.store.close();
    await this.local?.close();
  }
}
