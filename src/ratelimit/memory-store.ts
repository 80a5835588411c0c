/**
 * Counters in this process (no `redis` configured, or the `local` fallback while Redis is down).
 * The same algorithm as the Redis script, on the local clock. Entries expire on their own.
 *
 * Bounded: at most `maxEntries` subjects are kept (`rateLimit.memory.maxEntries`), and a new one
 * past that evicts the least recently used. Without a bound a client rotating source addresses
 * (an IPv6 /64 holds 2^64) would grow memory until the process dies, all the more as an entry of
 * a tier with a quota lives 32 days. An evicted subject that comes back starts from zero: it can
 * get up to one more window's worth of each limit, and of its quota (docs/rate-limiting.md).
 * The Map keeps insertion order, so re-inserting a subject on each use keeps it least-recently-
 * used first: the oldest key is the one to evict.
 */
import { admitted, describe, type Decision, type Plan } from './decision.js';
import type { RateLimitStore } from './store.js';
import { rolled, rolledQuota, type LimitState, type QuotaState } from './window.js';

type Entry = { limits: LimitState[]; quota: QuotaState | null; expiresAt: number };

/** `rateLimit.memory.maxEntries`' default: up to about 50 MB of counters (docs/configuration.md) */
export const DEFAULT_MAX_ENTRIES = 100_000;

export type MemoryStoreOptions = {
  /** subjects kept at most (≥ 1); past it the least recently used is evicted */
  readonly maxEntries?: number;
  /** called once per eviction (gatehouse_ratelimit_memory_evictions_total) */
  readonly onEvict?: () => void;
};

export class MemoryStore implements RateLimitStore {
  readonly kind = 'memory' as const;
  /** subjects evicted to stay within maxEntries */
  evictions = 0;
  readonly maxEntries: number;
  private readonly entries = new Map<string, Entry>();
  private readonly sweeper: NodeJS.Timeout;
  private readonly onEvict: (() => void) | undefined;

  constructor(
    private readonly now: () => number = Date.now,
    options: MemoryStoreOptions = {},
  ) {
    this.maxEntries = Math.max(1, options.maxEntries ?? DEFAULT_MAX_ENTRIES);
    this.onEvict = options.onEvict;
    this.sweeper = setInterval(() => this.sweep(), 10_000);
    this.sweeper.unref();
  }

  consume(key: string, plan: Plan): Promise<Decision> {
    return Promise.resolve(this.consumeSync(key, plan));
  }

  consumeSync(key: string, plan: Plan): Decision {
    const now = this.now();
    const entry = this.entries.get(key);
    const states = plan.limits.map((l, i) => rolled(entry?.limits[i], l.windowMs, now));
    const quota = plan.quota ? rolledQuota(entry?.quota ?? undefined, plan.quota.per, now) : null;
    const outcome = admitted(plan, states, quota, now);
    if (outcome === 'allowed') {
      for (const s of states) s.current++;
      if (quota) quota.used++;
    }
    const longest = Math.max(0, ...plan.limits.map((l) => 2 * l.windowMs));
    const expiresAt = now + (plan.quota ? Math.max(longest, 32 * 86_400_000) : longest);
    // deleted and set again: the subject moves to the most recently used end
    if (entry !== undefined) this.entries.delete(key);
    else if (this.entries.size >= this.maxEntries) this.evictOldest(now);
    this.entries.set(key, {
      limits: states.map((s) => ({ ...s })),
      quota: quota ? { ...quota } : null,
      expiresAt,
    });
    return describe(plan, outcome, states, quota, now);
  }

  ready(): Promise<boolean> {
    return Promise.resolve(true);
  }

  get size(): number {
    return this.entries.size;
  }

  private evictOldest(now: number): void {
    const oldest = this.entries.keys().next();
    if (oldest.done === true) return;
    const expired = (this.entries.get(oldest.value)?.expiresAt ?? 0) <= now;
    this.entries.delete(oldest.value);
    // an expired entry would have been swept anyway: only a live one costs accuracy
    if (expired) return;
    this.evictions++;
    this.onEvict?.();
  }

  private sweep(): void {
    const now = this.now();
    for (const [key, entry] of this.entries) if (entry.expiresAt <= now) this.entries.delete(key);
  }

  close(): Promise<void> {
    clearInterval(this.sweeper);
    this.entries.clear();
    return Promise.resolve();
  }
}
