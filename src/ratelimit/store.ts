import { ErrorCodes } from '../problems/error-codes.js';
import type { Decision, Plan } from './decision.js';
import type { LimitState, QuotaState } from './window.js';

/** Where `consumeInto` delivers a decision, or why there is none. */
export type DecisionSink = {
  resolve(decision: Decision): void;
  reject(err: Error): void;
};

/** The counts of a key as stored, read without counting anything, and the store's now. */
export type StoredCounts = {
  /** per limit of the plan, in order (undefined: nothing counted) */
  readonly limits: ReadonlyArray<LimitState | undefined>;
  readonly quota: QuotaState | undefined;
  /** the store's clock (Redis's TIME), ms */
  readonly now: number;
};

/**
 * Where counters live. `consume` checks every limit and the quota of `plan` for `key` and, when
 * the request is admitted, counts it everywhere, atomically. A refused request counts nothing.
 */
export interface RateLimitStore {
  readonly kind: 'memory' | 'redis' | 'redis-cluster';
  consume(key: string, plan: Plan): Promise<Decision>;
  /**
   * The same as `consume`, its outcome handed to `sink` (exactly one of its calls, perhaps
   * synchronously) instead of a promise: a caller that wraps the answer anyway (the failure
   * policy) then pays for one promise per request, not two.
   */
  consumeInto?(key: string, plan: Plan, sink: DecisionSink): void;
  /** the same, for a store that decides without I/O (in memory): no promise per request */
  consumeSync?(key: string, plan: Plan): Decision;
  /** resolves once the store can answer, or after `timeoutMs` (then requests meet the failure policy) */
  ready(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
  /**
   * Which part of the store holds `key` (a Cluster master, `host:port`; `*` while its slot's
   * owner is unknown). Absent: one part. The failure policy keeps one breaker per part.
   */
  shardOf?(key: string): string;
  /** the parts that exist now (a Cluster's masters): breakers of others are dropped */
  shards?(): readonly string[];
  /**
   * Takes back the admission of an allowed `consume` decided at `time` (`Decision.time`), whose
   * answer came after the caller had given up on it.
   */
  refund?(key: string, plan: Plan, time: number): Promise<void>;
  /** Reads `key`'s counts under `plan` without counting (the admin API's usage). */
  peek?(key: string, plan: Plan): Promise<StoredCounts>;
  /** Forgets `key`'s counts under `plan` (the admin API's reset). */
  reset?(key: string, plan: Plan): Promise<void>;
}

/** Thrown (or rejected with) when the store could not decide: the failure policy applies. */
export class StoreUnavailableError extends Error {
  readonly code = ErrorCodes.STORE_UNAVAILABLE;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
