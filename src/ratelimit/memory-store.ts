/**
 * Counters in this process (no `redis` configured, or the `local` fallback while Redis is down).
 * The same algorithm as the Redis script, on the local clock. Entries expire on their own.
 */
import { admitted, describe, type Decision, type Plan } from './decision.js';
import type { RateLimitStore } from './store.js';
import { rolled, rolledQuota, type LimitState, type QuotaState } from './window.js';

type Entry = { limits: LimitState[]; quota: QuotaState | null; expiresAt: number };

export class MemoryStore implements RateLimitStore {
  readonly kind = 'memory' as const;
  private readonly entries = new Map<string, Entry>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(private readonly now: () => number = Date.now) {
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
