/** Counters in Redis (one node or a Cluster): one EVALSHA per request (redis-script.ts). */
import type { Cluster, Redis } from 'ioredis';
import { describe, type Decision, type Outcome, type Plan } from './decision.js';
import { RATE_LIMIT_SCRIPT } from './redis-script.js';
import { StoreUnavailableError, type RateLimitStore } from './store.js';
import type { LimitState, QuotaState } from './window.js';

type Client = (Redis | Cluster) & {
  gatehouseRateLimit(numKeys: number, ...args: Array<string | number>): Promise<number[]>;
};

const OUTCOMES: readonly Outcome[] = ['allowed', 'rate_limited', 'quota_exceeded'];

export class RedisStore implements RateLimitStore {
  readonly kind: 'redis' | 'redis-cluster';
  private readonly client: Client;

  constructor(client: Redis | Cluster) {
    this.kind = 'isCluster' in client && client.isCluster ? 'redis-cluster' : 'redis';
    // defineCommand: EVALSHA, and EVAL once when Redis answers NOSCRIPT (after a restart or flush)
    client.defineCommand('gatehouseRateLimit', { lua: RATE_LIMIT_SCRIPT });
    this.client = client as Client;
  }

  async consume(key: string, plan: Plan): Promise<Decision> {
    const keys = plan.limits.map((l) => `${key}:${l.name}`);
    if (plan.quota) keys.push(`${key}:q:${plan.quota.per}`);
    const args: Array<string | number> = [plan.limits.length];
    for (const l of plan.limits) args.push(l.windowMs, l.requests);
    args.push(plan.quota?.requests ?? 0, plan.quota?.per ?? '');
    let reply: number[];
    try {
      reply = await this.client.gatehouseRateLimit(keys.length, ...keys, ...args);
    } catch (err) {
      throw new StoreUnavailableError(`redis: ${(err as Error).message}`, { cause: err });
    }
    const outcome = OUTCOMES[reply[0] ?? 0] ?? 'allowed';
    const now = reply[1] ?? Date.now();
    const states: LimitState[] = plan.limits.map((_, i) => ({
      index: reply[2 + 3 * i] ?? 0,
      current: reply[3 + 3 * i] ?? 0,
      previous: reply[4 + 3 * i] ?? 0,
    }));
    const q = 2 + 3 * plan.limits.length;
    const quota: QuotaState | null = plan.quota ? { period: reply[q] ?? 0, used: reply[q + 1] ?? 0 } : null;
    return describe(plan, outcome, states, quota, now);
  }

  ready(timeoutMs: number): Promise<boolean> {
    if (this.client.status === 'ready') return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.client.off('ready', onReady);
        resolve(ok);
      };
      const onReady = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.client.once('ready', onReady);
    });
  }

  async close(): Promise<void> {
    this.client.disconnect();
  }
}
