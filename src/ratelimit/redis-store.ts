/** Counters in Redis (one node or a Cluster): one EVALSHA per request (redis-script.ts). */
import type { Cluster, Redis } from 'ioredis';
import { describe, type Decision, type Outcome, type Plan } from './decision.js';
import { RATE_LIMIT_SCRIPT } from './redis-script.js';
import { StoreUnavailableError, type RateLimitStore } from './store.js';
import type { LimitState, QuotaState } from './window.js';

type ScriptCommand = (...keysAndArgs: Array<string | number>) => Promise<number[]>;

const OUTCOMES: readonly Outcome[] = ['allowed', 'rate_limited', 'quota_exceeded'];

/** Resolves true once `client` is ready, false after `ms`. */
function untilReady(client: Redis | Cluster, ms: number): Promise<boolean> {
  if (client.status === 'ready') return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      client.off('ready', onReady);
      resolve(ok);
    };
    const onReady = () => done(true);
    const timer = setTimeout(() => done(false), Math.max(0, ms));
    client.once('ready', onReady);
  });
}

export class RedisStore implements RateLimitStore {
  readonly kind: 'redis' | 'redis-cluster';
  /** one script command per number of keys (see `command`) */
  private readonly commands = new Map<number, ScriptCommand>();

  constructor(private readonly client: Redis | Cluster) {
    this.kind = client.isCluster ? 'redis-cluster' : 'redis';
  }

  /**
   * defineCommand gives EVALSHA, and EVAL when Redis answers NOSCRIPT (after a restart or a
   * flush) or on a new connection. The number of keys is fixed per command, so the first
   * argument of a call is the first key: ioredis's auto-pipelining on a Cluster groups commands
   * by the slot of the first argument, and with a variable key count that is the count itself
   * (every call would land in one pipeline, refused with "All keys in the pipeline should belong
   * to the same slots allocation group"). EVALSHA itself is routed by its first key's slot.
   */
  private command(numKeys: number): ScriptCommand {
    let command = this.commands.get(numKeys);
    if (command === undefined) {
      const name = `gatehouseRateLimit${numKeys}`;
      this.client.defineCommand(name, { lua: RATE_LIMIT_SCRIPT, numberOfKeys: numKeys });
      const fn = (this.client as unknown as Record<string, ScriptCommand>)[name] as ScriptCommand;
      command = fn.bind(this.client);
      this.commands.set(numKeys, command);
    }
    return command;
  }

  async consume(key: string, plan: Plan): Promise<Decision> {
    // Fail fast while (re)connecting: a Cluster with auto-pipelining would otherwise hold the
    // command until the cluster is back, unbounded by the command timeout.
    if (this.client.status !== 'ready') throw new StoreUnavailableError(`redis: ${this.client.status}`);
    const keys = plan.limits.map((l) => `${key}:${l.name}`);
    if (plan.quota) keys.push(`${key}:q:${plan.quota.per}`);
    const args: Array<string | number> = [plan.limits.length];
    for (const l of plan.limits) args.push(l.windowMs, l.requests);
    args.push(plan.quota?.requests ?? 0, plan.quota?.per ?? '');
    let reply: number[];
    try {
      reply = await this.command(keys.length)(...keys, ...args);
    } catch (err) {
      // A node lost, restarted or replaced: MOVED errors (which auto-pipelining does not follow
      // when a pipeline's replies differ) or closed connections. Re-read the slot map now
      // (ioredis runs one refresh at a time) rather than at the next periodic refresh.
      if (this.client.isCluster) (this.client as Cluster).refreshSlotsCache();
      throw new StoreUnavailableError(`redis: ${(err as Error).message}`, { cause: err });
    }
    const outcome = OUTCOMES[reply[0] ?? -1];
    const now = reply[1];
    // never decide on the gateway's clock
    if (outcome === undefined || now === undefined) throw new StoreUnavailableError('redis: malformed reply');
    const states: LimitState[] = plan.limits.map((_, i) => ({
      index: reply[2 + 3 * i] ?? 0,
      current: reply[3 + 3 * i] ?? 0,
      previous: reply[4 + 3 * i] ?? 0,
    }));
    const q = 2 + 3 * plan.limits.length;
    const quota: QuotaState | null = plan.quota ? { period: reply[q] ?? 0, used: reply[q + 1] ?? 0 } : null;
    return describe(plan, outcome, states, quota, now);
  }

  /**
   * On a Cluster, 'ready' means the slots are known; the connections to the masters are made
   * lazily, and while one is connecting a command to it is refused (the offline queue is off).
   * So ready also means every master connection is up: the first burst after a start does not
   * fail.
   */
  async ready(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    if (!(await untilReady(this.client, timeoutMs))) return false;
    if (!this.client.isCluster) return true;
    const masters = (this.client as Cluster).nodes('master');
    for (const node of masters) if (node.status === 'wait') node.connect().catch(() => undefined);
    const up = await Promise.all(masters.map((node) => untilReady(node, deadline - Date.now())));
    return up.every(Boolean);
  }

  async close(): Promise<void> {
    this.client.disconnect();
  }
}
