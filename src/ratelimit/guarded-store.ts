/**
 * The shared store behind a failure policy.
 *
 * - **Timeout.** Every call is bounded by the Redis timeout, counted from when the command was
 *   written (the end of the event-loop turn that made the call: auto-pipelined commands are
 *   flushed then, and a burst's other requests are parsed first), and a reply that is already
 *   in the socket when the time is up is read before giving up. A shard's first calls (cold
 *   connections, the script's first EVAL, a fleet starting at once) get a longer budget.
 * - **Late replies.** A call given up on that Redis still answers with an admission was counted
 *   there: the count is taken back (`refund`), so a request decided by the policy is counted
 *   only by the policy.
 * - **Breakers per shard.** A Redis Cluster has one breaker per master (`shardOf`), a single
 *   node one: a failed call opens its shard's breaker, and for 250 ms that shard is not called
 *   (the policy decides its requests); then one probe goes to it (a background EXISTS on a key of
 *   that shard, so it follows a failover to whichever node serves the slot now, or the next
 *   request). A failed probe doubles the wait (up to 5 s), except when the node answered quickly
 *   with an error of its own (CLUSTERDOWN, TRYAGAIN, LOADING...): it is alive, and will serve
 *   again as soon as its cluster is back, so it is probed every 250 ms. Other shards go on.
 * - **Policy** while a shard is degraded: `open` admits, `closed` refuses (503
 *   store_unavailable), `local` counts in this process.
 * - **One log pair per outage**: `degraded mode` (warn) when the first shard fails, `recovered`
 *   (info) when the last one is back; both counted in the metrics.
 */
import type { Logger } from '../observability/logger.js';
import { ErrorCodes } from '../problems/error-codes.js';
import type { Decision, Plan } from './decision.js';
import { MemoryStore, type MemoryStoreOptions } from './memory-store.js';
import type { DecisionSink, RateLimitStore } from './store.js';

export type FailurePolicy = 'open' | 'closed' | 'local';

export type GuardedDecision = Decision | 'open' | 'closed';

export const MIN_OPEN_MS = 250;
export const MAX_OPEN_MS = 5000;

export type GuardOptions = {
  /** the breaker's clock (tests inject one) */
  now?: () => number;
  /**
   * a cheap round trip to the shared store, run in the background while degraded: to the shard
   * holding `key` (null: to any node)
   */
  probe?: (key: string | null) => Promise<unknown>;
  /**
   * How long a call may take (`redis.timeout`), from when it was written. Late only if no reply
   * has arrived by then: replies that came in while this process was busy are read first.
   */
  timeoutMs?: number;
  /** the budget of a shard's calls until it has answered once (default: `timeoutMs`) */
  coldTimeoutMs?: number;
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
  readonly code = ErrorCodes.STORE_TIMEOUT;
  constructor(ms: number) {
    super(`no answer within ${ms} ms`);
  }
}

/** One shard's breaker (one Cluster master, or the whole store). */
type Breaker = {
  readonly shard: string;
  degraded: boolean;
  openUntil: number;
  openMs: number;
  probing: boolean;
  /** false after a recovery seen only by a probe: a failure before a real call succeeds keeps
   *  the open period growing (the probe is a read; the script can still be refused) */
  confirmed: boolean;
  /** has answered a call: the short budget applies */
  warm: boolean;
  /** a key this shard holds, for keyed probes */
  key: string | null;
  timer: NodeJS.Timeout | undefined;
};

/** A call waiting for the store; `expire` runs when its time is up and it has not settled. */
type Pending = { settled: boolean; ms: number; expire(): void };

/**
 * One request's call to a store with `consumeInto`: what `bounded` and the two callbacks after
 * it do, in one object (the store's sink and the turn's timer entry), so a decision costs one
 * promise. A decision that arrives after the time was up is refunded when it admitted.
 */
class GuardedCall implements Pending, DecisionSink {
  settled = false;
  constructor(
    private readonly guard: GuardedStore,
    private readonly b: Breaker,
    private readonly key: string,
    private readonly plan: Plan,
    private readonly probe: boolean,
    readonly ms: number,
    private readonly done: (d: GuardedDecision) => void,
  ) {}

  resolve(decision: Decision): void {
    if (this.settled) {
      if (decision.outcome === 'allowed') this.guard.refund(this.key, this.plan, decision);
      return;
    }
    this.settled = true;
    this.done(this.guard.answered(this.b, this.probe, decision));
  }

  reject(err: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.done(this.guard.unanswered(this.b, this.key, this.plan, this.probe, err));
  }

  expire(): void {
    // the timer sets `settled` before calling: fail as `bounded` does when its time is up
    this.done(this.guard.unanswered(this.b, this.key, this.plan, this.probe, new StoreTimeoutError(this.ms)));
  }
}

/**
 * Errors that are a live node's own answer, not a lost or silent one: the node is reachable and
 * answers at once, so probing it often costs nothing, and it serves again as soon as it can.
 */
const LIVE_NODE_ERRORS = /^(CLUSTERDOWN|TRYAGAIN|LOADING|MASTERDOWN|MOVED|ASK|BUSY|OOM|READONLY)\b/;

function liveNodeAnswer(err: unknown): boolean {
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause : err;
  return cause instanceof Error && LIVE_NODE_ERRORS.test(cause.message);
}

export class GuardedStore {
  /** requests decided by the failure policy instead of the shared store */
  degradedDecisions = 0;
  /** calls to the shared store (requests and probes) that failed */
  storeErrors = 0;
  /** outages: times the store went from every shard healthy to one degraded */
  trips = 0;
  /** admissions counted by the store after the call had been given up on, then taken back */
  refunds = 0;
  /** ... of which the refund itself failed (the count stayed) */
  refundFailures = 0;
  private readonly breakers = new Map<string, Breaker>();
  private degradedShards = 0;
  private closed = false;
  private local: MemoryStore | null = null;
  /** calls made in this event-loop turn: their clocks start together when it ends */
  private turn: Pending[] | null = null;
  private readonly now: () => number;
  private readonly wallNow: () => number;
  private readonly probe: ((key: string | null) => Promise<unknown>) | undefined;
  private readonly timeoutMs: number | undefined;
  private readonly coldTimeoutMs: number | undefined;
  private readonly metrics: GuardMetrics | undefined;
  private readonly localOptions: MemoryStoreOptions | undefined;

  constructor(
    readonly store: RateLimitStore,
    readonly policy: FailurePolicy,
    private readonly logger: Logger,
    options: GuardOptions = {},
  ) {
    // the breakers' open periods are durations (monotonic); the `local` fallback's windows and
    // calendar quotas are wall-clock times
    this.now = options.now ?? (() => performance.now());
    this.wallNow = options.now ?? Date.now;
    this.probe = options.probe;
    this.timeoutMs = options.timeoutMs;
    this.coldTimeoutMs = options.coldTimeoutMs ?? options.timeoutMs;
    this.metrics = options.metrics;
    this.localOptions = options.local;
  }

  /** some shard is degraded: some callers are decided by the policy */
  get isDegraded(): boolean {
    return this.degradedShards > 0;
  }

  /** the store decides for nobody: it is down as a whole, or every shard of it is degraded */
  get isUnavailable(): boolean {
    if (this.degradedShards === 0) return false;
    if (this.breakers.get('')?.degraded || this.breakers.get('*')?.degraded) return true;
    const shards = this.store.shards?.();
    return shards === undefined || shards.every((s) => this.breakers.get(s)?.degraded === true);
  }

  /** ms the breaker stays open after the current (or next) failure (the first shard's) */
  get openPeriodMs(): number {
    return this.breakers.values().next().value?.openMs ?? MIN_OPEN_MS;
  }

  consume(key: string, plan: Plan): Promise<GuardedDecision> | GuardedDecision {
    // an in-process store cannot fail: decide synchronously, no promise, no timer
    if (this.store.consumeSync !== undefined) return this.store.consumeSync(key, plan);
    const b = this.breaker(this.store.shardOf?.(key) ?? '');
    let probe = false;
    if (b.degraded) {
      if (b.probing || this.now() < b.openUntil) return this.fallback(key, plan);
      b.probing = probe = true;
      b.key = key;
    }
    const ms = b.warm ? this.timeoutMs : this.coldTimeoutMs;
    const store = this.store;
    if (store.consumeInto !== undefined) {
      // one promise per request: the call object is the store's sink and the timer's entry
      return new Promise<GuardedDecision>((resolve) => {
        const call = new GuardedCall(this, b, key, plan, probe, ms ?? 0, resolve);
        if (ms !== undefined) this.track(call);
        store.consumeInto?.(key, plan, call);
      });
    }
    return this.bounded(b, store.consume(key, plan), key, plan).then(
      (decision) => this.answered(b, probe, decision),
      (err: unknown) => this.unanswered(b, key, plan, probe, err),
    );
  }

  /** the store decided in time */
  answered(b: Breaker, probe: boolean, decision: Decision): Decision {
    if (probe) b.probing = false;
    b.confirmed = true;
    b.warm = true;
    if (b.degraded) this.recover(b);
    return decision;
  }

  /** the store failed, or did not answer in time: the policy decides */
  unanswered(b: Breaker, key: string, plan: Plan, probe: boolean, err: unknown): GuardedDecision {
    this.storeErrors++;
    this.metrics?.storeError();
    b.key = key;
    this.failed(b, err, probe);
    return this.fallback(key, plan);
  }

  /**
   * The store is known to be unreachable (at start) or may be back (its connection is ready
   * again, or a Cluster's slot map was refreshed): `unavailable` trips the whole store's breaker,
   * `available` ends every open period at once (breakers of Cluster masters that no longer
   * serve slots are dropped: their slots moved).
   */
  hint(state: 'unavailable' | 'available', reason = 'not reachable'): void {
    if (this.closed) return;
    if (state === 'unavailable') {
      const b = this.breaker('');
      if (!b.degraded) this.failed(b, new Error(reason), false);
      return;
    }
    const live = this.store.shards?.();
    for (const b of [...this.breakers.values()]) {
      if (live !== undefined && b.shard !== '' && !live.includes(b.shard)) {
        this.drop(b);
        continue;
      }
      if (!b.degraded || b.probing) continue;
      b.openUntil = this.now();
      if (this.probe) this.backgroundProbe(b);
    }
  }

  private breaker(shard: string): Breaker {
    let b = this.breakers.get(shard);
    if (b === undefined) {
      b = {
        shard,
        degraded: false,
        openUntil: 0,
        openMs: MIN_OPEN_MS,
        probing: false,
        confirmed: true,
        warm: false,
        key: null,
        timer: undefined,
      };
      this.breakers.set(shard, b);
    }
    return b;
  }

  private fallback(key: string, plan: Plan): GuardedDecision {
    this.degradedDecisions++;
    this.metrics?.degradedDecision();
    if (this.policy === 'local')
      return (this.local ??= new MemoryStore(this.wallNow, this.localOptions)).consumeSync(key, plan);
    return this.policy;
  }

  /**
   * A call to the store failed. The first failure opens the shard's breaker; a failed probe
   * lengthens the open period. Requests that were already in flight when the breaker opened and
   * fail as well change nothing: one outage costs one trip, however many requests waited on it.
   */
  private failed(b: Breaker, err: unknown, probe: boolean): void {
    if (probe) b.probing = false;
    const live = liveNodeAnswer(err);
    if (!b.degraded) {
      b.degraded = true;
      b.openMs = b.confirmed || live ? MIN_OPEN_MS : Math.min(b.openMs * 2, MAX_OPEN_MS);
      if (++this.degradedShards === 1) {
        this.trips++;
        this.metrics?.degraded(true);
        this.logger.warn(
          {
            store: this.store.kind,
            policy: this.policy,
            ...(b.shard !== '' ? { node: b.shard } : {}),
            err: err instanceof Error ? err.message : String(err),
          },
          'rate-limit store unavailable: degraded mode',
        );
      }
    } else if (probe) {
      b.openMs = live ? MIN_OPEN_MS : Math.min(b.openMs * 2, MAX_OPEN_MS);
    } else return;
    b.openUntil = this.now() + b.openMs;
    this.schedule(b);
  }

  private recover(b: Breaker): void {
    b.degraded = false;
    b.probing = false;
    if (b.confirmed) b.openMs = MIN_OPEN_MS;
    clearTimeout(b.timer);
    b.timer = undefined;
    if (--this.degradedShards === 0) {
      this.metrics?.degraded(false);
      this.logger.info(
        { store: this.store.kind, degradedDecisions: this.degradedDecisions },
        'rate-limit store recovered',
      );
    }
  }

  /** a Cluster master that no longer serves slots: its requests go to the new owners */
  private drop(b: Breaker): void {
    if (b.degraded) this.recover(b);
    this.breakers.delete(b.shard);
  }

  private schedule(b: Breaker): void {
    if (this.probe === undefined || this.closed) return;
    clearTimeout(b.timer);
    b.timer = setTimeout(() => this.backgroundProbe(b), Math.max(0, b.openUntil - this.now()));
    b.timer.unref();
  }

  private backgroundProbe(b: Breaker): void {
    clearTimeout(b.timer);
    b.timer = undefined;
    const probe = this.probe;
    if (probe === undefined || this.closed || !b.degraded || b.probing) return;
    const live = this.store.shards?.();
    if (live !== undefined && b.shard !== '' && !live.includes(b.shard)) {
      this.drop(b);
      return;
    }
    b.probing = true;
    this.boundedProbe(probe(b.key)).then(
      () => {
        b.probing = false;
        if (b.degraded && !this.closed) {
          b.confirmed = false;
          this.recover(b);
        }
      },
      (err: unknown) => {
        this.storeErrors++;
        this.metrics?.storeError();
        if (!this.closed) this.failed(b, err, true);
        else b.probing = false;
      },
    );
  }

  /**
   * The store's call, failing after the shard's budget. An admission that arrives after that
   * was counted by the store for a request the policy decided: it is taken back.
   */
  private bounded(b: Breaker, call: Promise<Decision>, key: string, plan: Plan): Promise<Decision> {
    const ms = b.warm ? this.timeoutMs : this.coldTimeoutMs;
    if (ms === undefined) return call;
    return new Promise<Decision>((resolve, reject) => {
      const pending: Pending = { settled: false, ms, expire: () => reject(new StoreTimeoutError(ms)) };
      this.track(pending);
      call.then(
        (decision) => {
          if (!pending.settled) {
            pending.settled = true;
            resolve(decision);
          } else if (decision.outcome === 'allowed') this.refund(key, plan, decision);
        },
        (err: unknown) => {
          if (pending.settled) return;
          pending.settled = true;
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }

  private boundedProbe(call: Promise<unknown>): Promise<unknown> {
    const ms = this.timeoutMs;
    if (ms === undefined) return call;
    return new Promise((resolve, reject) => {
      const pending: Pending = { settled: false, ms, expire: () => reject(new StoreTimeoutError(ms)) };
      this.track(pending);
      call.then(
        (v) => {
          if (pending.settled) return;
          pending.settled = true;
          resolve(v);
        },
        (err: unknown) => {
          if (pending.settled) return;
          pending.settled = true;
          reject(err instanceof Error ? err : new Error(String(err)));
        },
      );
    });
  }

  /**
   * Starts `p`'s clock at the end of this event-loop turn, with every other call of the turn
   * (one immediate and one timer per turn, not per call). When the time is up, the check runs in
   * a setImmediate after the timer: the poll phase (reading sockets) comes between the two, so a
   * reply already received is taken even if the loop was busy past the deadline.
   */
  private track(p: Pending): void {
    if (this.turn !== null) {
      this.turn.push(p);
      return;
    }
    const calls = [p];
    this.turn = calls;
    setImmediate(() => {
      this.turn = null;
      const byBudget = new Map<number, Pending[]>();
      for (const c of calls) {
        if (c.settled) continue;
        const group = byBudget.get(c.ms);
        if (group) group.push(c);
        else byBudget.set(c.ms, [c]);
      }
      for (const [ms, group] of byBudget) {
        setTimeout(
          () =>
            setImmediate(() => {
              for (const c of group) {
                if (c.settled) continue;
                c.settled = true;
                c.expire();
              }
            }),
          ms,
        );
      }
    });
  }

  refund(key: string, plan: Plan, decision: Decision): void {
    if (this.store.refund === undefined || this.closed) return;
    this.refunds++;
    this.store.refund(key, plan, decision.time).catch(() => {
      this.refundFailures++;
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const b of this.breakers.values()) clearTimeout(b.timer);
    await this.store.close();
    await this.local?.close();
  }
}
