/**
 * Counters in this process (no `redis` configured, or the `local` fallback while Redis is down).
 * The same algorithm as the Redis script, on the local clock. Entries expire on their own.
 *
 * Bounded: at most `maxEntries` subjects are kept (`rateLimit.memory.maxEntries`), and a new one
 * past that evicts the least recently used. Without a bound a client rotating source addresses
 * (an IPv6 /64 holds 2^64) would grow memory until the process dies, all the more as an entry of
 * a tier with a quota lives 32 days. An evicted subject that comes back starts from zero: it can
 * get up to one more window's worth of each limit, and of its quota (docs/rate-limiting.md).
 *
 * The order is lru-cache's (a doubly linked list over arrays, O(1) per use and eviction). A
 * plain Map re-inserted on each use cannot do it: evicting its first key means skipping the
 * holes deletions leave at the front of V8's table, which made each decision in a flood of new
 * subjects more than ten times slower (46 µs of CPU instead of 4 µs, docs/rate-limiting.md#memory).
 */
import { LRUCache } from 'lru-cache';
import { admitted, describe, type Decision, type Plan } from './decision.js';
import type { RateLimitStore, StoredCounts } from './store.js';
import { rolled, rolledQuota, type LimitState, type QuotaState } from './window.js';

type Entry = { limits: LimitState[]; quota: QuotaState | null; expiresAt: number };

/** `rateLimit.memory.maxEntries`' default: up to about 50 MB of counters (docs/configuration.md) */
export const DEFAULT_MAX_ENTRIES = 100_000;

export type MemoryStoreOptions = {
  /** subjects kept at most (≥ 1); past it the least recently used is evicted */
  readonly maxEntries?: number;
  /** called once per eviction of a live entry (gatehouse_ratelimit_memory_evictions_total) */
  readonly onEvict?: () => void;
};

export class MemoryStore implements RateLimitStore {
  readonly kind = 'memory' as const;
  /** subjects evicted to stay within maxEntries, while their counts still mattered */
  evictions = 0;
  readonly maxEntries: number;
  private readonly entries: LRUCache<string, Entry>;
  private readonly sweeper: NodeJS.Timeout;
  private readonly onEvict: (() => void) | undefined;

  constructor(
    private readonly now: () => number = Date.now,
    options: MemoryStoreOptions = {},
  ) {
    this.maxEntries = Math.max(1, Math.floor(options.maxEntries ?? DEFAULT_MAX_ENTRIES));
    this.onEvict = options.onEvict;
    this.entries = new LRUCache<string, Entry>({
      // counted by size rather than `max`, which would set aside `max` slots up front (about
      // 30 ms for 100 000, at every reload and at the first fallback while Redis is down)
      maxSize: this.maxEntries,
      sizeCalculation: () => 1,
      dispose: (entry, _key, reason) => {
        // an expired entry would have been swept anyway: only a live one costs accuracy
        if (reason !== 'evict' || entry.expiresAt <= this.now()) return;
        this.evictions++;
        this.onEvict?.();
      },
    });
    this.sweeper = setInterval(() => this.sweep(), 10_000);
    this.sweeper.unref();
  }

  consume(key: string, plan: Plan): Promise<Decision> {
    return Promise.resolve(this.consumeSync(key, plan));
  }

  consumeSync(key: string, plan: Plan): Decision {
    const now = this.now();
    // `get` also makes the subject the most recently used
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
    const limits = states.map((s) => ({ ...s }));
    const stored = quota ? { ...quota } : null;
    if (entry === undefined) {
      this.entries.set(key, { limits, quota: stored, expiresAt });
    } else {
      entry.limits = limits;
      entry.quota = stored;
      entry.expiresAt = expiresAt;
    }
    return describe(plan, outcome, states, quota, now);
  }

  peek(key: string, plan: Plan): Promise<StoredCounts> {
    // `peek`: reading does not make the subject the most recently used
    const entry = this.entries.peek(key);
    return Promise.resolve({
      limits: plan.limits.map((_, i) => entry?.limits[i]),
      quota: entry?.quota ?? undefined,
      now: this.now(),
    });
  }

  reset(key: string): Promise<void> {
    this.entries.delete(key);
    return Promise.resolve();
  }

  ready(): Promise<boolean> {
    return Promise.resolve(true);
  }

  get size(): number {
    return this.entries.size;
  }

  private sweep(): void {
    const now = this.now();
    const expired: string[] = [];
    for (const [key, entry] of this.entries.entries()) if (entry.expiresAt <= now) expired.push(key);
    for (const key of expired) this.entries.delete(key);
  }

  close(): Promise<void> {
    clearInterval(this.sweeper);
    this.entries.clear();
    return Promise.resolve();
  }
}
