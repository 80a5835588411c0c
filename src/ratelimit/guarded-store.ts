/**
 * The shared store behind a failure policy. Every call is bounded by the Redis timeout; after a
 * failure a breaker skips Redis for a while (doubling up to 5 s, one probe request when it ends)
 * so a dead Redis does not cost each request its timeout. While degraded:
 * `open` admits, `closed` refuses (503 store_unavailable), `local` counts in this process.
 * Entering and leaving degraded mode is logged at warn/info and counted.
 */
import type { Logger } from '../observability/logger.js';
import type { Decision, Plan } from './decision.js';
import { MemoryStore } from './memory-store.js';
import type { RateLimitStore } from './store.js';

export type FailurePolicy = 'open' | 'closed' | 'local';

export type GuardedDecision = Decision | 'open' | 'closed';

const MIN_OPEN_MS = 250;
const MAX_OPEN_MS = 5000;

export class GuardedStore {
  /** requests decided by the failure policy instead of the shared store */
  degradedDecisions = 0;
  storeErrors = 0;
  private degraded = false;
  private openUntil = 0;
  private openMs = MIN_OPEN_MS;
  private probing = false;
  private local: MemoryStore | null = null;

  constructor(
    readonly store: RateLimitStore,
    readonly policy: FailurePolicy,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  get isDegraded(): boolean {
    return this.degraded;
  }

  consume(key: string, plan: Plan): Promise<GuardedDecision> | GuardedDecision {
    if (this.degraded) {
      if (this.now() < this.openUntil || this.probing) return this.fallback(key, plan);
      this.probing = true;
    }
    return this.store.consume(key, plan).then(
      (decision) => {
        if (this.degraded) this.recover();
        return decision;
      },
      (err: unknown) => {
        this.storeErrors++;
        this.trip(err);
        return this.fallback(key, plan);
      },
    );
  }

  private fallback(key: string, plan: Plan): GuardedDecision {
    this.degradedDecisions++;
    if (this.policy === 'local') return (this.local ??= new MemoryStore(this.now)).consumeSync(key, plan);
    return this.policy;
  }

  private trip(err: unknown): void {
    this.probing = false;
    if (this.degraded) this.openMs = Math.min(this.openMs * 2, MAX_OPEN_MS);
    else {
      this.degraded = true;
      this.openMs = MIN_OPEN_MS;
      this.logger.warn(
        { store: this.store.kind, policy: this.policy, err: (err as Error).message },
        'rate-limit store unavailable: degraded mode',
      );
    }
    this.openUntil = this.now() + this.openMs;
  }

  private recover(): void {
    this.degraded = false;
    this.probing = false;
    this.openMs = MIN_OPEN_MS;
    this.logger.info(
      { store: this.store.kind, degradedDecisions: this.degradedDecisions },
      'rate-limit store recovered',
    );
  }

  async close(): Promise<void> {
    await this.store.close();
    await this.local?.close();
  }
}
