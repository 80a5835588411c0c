/** Counters in Redis (one node or a Cluster): one EVALSHA per request (redis-script.ts). */
import { performance } from 'node:perf_hooks';
import type { Cluster, Redis } from 'ioredis';
// ioredis's own slot function (no exports map restricts it): the same routing as the client's
import calculateSlot from 'cluster-key-slot';
import { describe, type Decision, type Outcome, type Plan } from './decision.js';
import { PEEK_SCRIPT, RATE_LIMIT_SCRIPT, REFUND_SCRIPT } from './redis-script.js';
import { StoreUnavailableError, type RateLimitStore, type StoredCounts } from './store.js';
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

export type RedisStoreOptions = {
  /**
   * A command that Redis runs later than this after it was sent counts nothing (the script's
   * deadline, on each node's clock as learnt from its replies); 0 = no deadline.
   */
  expireAfterMs?: number;
};

/** How far a node's clock is ahead of this process's monotonic clock, as a lower bound. */
type ClockOffset = { ms: number; at: number };

/** a lower bound older than this is replaced by the next one, even a lower one (a clock step back) */
const OFFSET_TTL_MS = 60_000;

export class RedisStore implements RateLimitStore {
  readonly kind: 'redis' | 'redis-cluster';
  /** one script command per number of keys (see `command`) */
  private readonly commands = new Map<string, ScriptCommand>();
  private readonly offsets = new Map<string, ClockOffset>();
  private readonly expireAfterMs: number;
  private readonly cluster: Cluster | null;

  constructor(
    private readonly client: Redis | Cluster,
    options: RedisStoreOptions = {},
  ) {
    this.kind = client.isCluster ? 'redis-cluster' : 'redis';
    this.cluster = client.isCluster ? (client as Cluster) : null;
    this.expireAfterMs = options.expireAfterMs ?? 0;
  }

  /** the master serving `key`'s slot (`host:port`), `*` when unknown; '' for one node */
  shardOf(key: string): string {
    if (this.cluster === null) return '';
    return this.cluster.slots[calculateSlot(key)]?.[0] ?? '*';
  }

  shards(): readonly string[] {
    if (this.cluster === null) return [''];
    return this.cluster.nodes('master').map((n) => `${n.options.host ?? ''}:${n.options.port ?? ''}`);
  }

  /** A read on `key`'s slot (on a Cluster: routed like the script), else a PING. */
  probe(key: string | null): Promise<unknown> {
    if (this.client.status !== 'ready') return Promise.reject(new Error(`redis: ${this.client.status}`));
    const call = key === null ? this.client.ping() : this.client.exists(key);
    // a failed probe re-reads the slot map too: a promoted replica is found at the next one
    return this.cluster === null ? call : call.catch((err: unknown) => this.refreshAfter(err));
  }

  private refreshAfter(err: unknown): never {
    this.cluster?.refreshSlotsCache();
    throw err;
  }

  /**
   * defineCommand gives EVALSHA, and EVAL when Redis answers NOSCRIPT (after a restart or a
   * flush) or on a new connection. The number of keys is fixed per command, so the first
   * argument of a call is the first key: ioredis's auto-pipelining on a Cluster groups commands
   * by the slot of the first argument, and with a variable key count that is the count itself
   * (every call would land in one pipeline, refused with "All keys in the pipeline should belong
   * to the same slots allocation group"). EVALSHA itself is routed by its first key's slot.
   */
  private command(numKeys: number, refund: boolean | 'peek' = false): ScriptCommand {
    const kind = refund === 'peek' ? 'Peek' : refund ? 'Refund' : 'RateLimit';
    const name = `gatehouse${kind}${numKeys}`;
    let command = this.commands.get(name);
    if (command === undefined) {
      this.client.defineCommand(name, {
        lua: refund === 'peek' ? PEEK_SCRIPT : refund ? REFUND_SCRIPT : RATE_LIMIT_SCRIPT,
        numberOfKeys: numKeys,
      });
      const fn = (this.client as unknown as Record<string, ScriptCommand>)[name] as ScriptCommand;
      command = fn.bind(this.client);
      this.commands.set(name, command);
    }
    return command;
  }

  private keys(key: string, plan: Plan): string[] {
    const keys = plan.limits.map((l) => `${key}:${l.name}`);
    if (plan.quota) keys.push(`${key}:q:${plan.quota.per}`);
    return keys;
  }

  /** The deadline of a command sent now, on the clock of the node serving `shard` (0: none). */
  private deadline(shard: string): number {
    const offset = this.offsets.get(shard);
    if (this.expireAfterMs <= 0 || offset === undefined) return 0;
    return Math.floor(performance.now() + offset.ms + this.expireAfterMs);
  }

  /**
   * A reply computed at `redisNow` and read at `receivedAt`: the node's clock minus ours is at
   * least `redisNow - receivedAt` (it read the time before we received the answer). The highest
   * such bound is kept, so the deadline given to that node is never later than when this
   * process gives up plus `expireAfterMs`.
   */
  private learnClock(shard: string, redisNow: number, receivedAt: number): void {
    const ms = redisNow - receivedAt;
    const known = this.offsets.get(shard);
    if (known === undefined) this.offsets.set(shard, { ms, at: receivedAt });
    else if (ms >= known.ms || receivedAt - known.at > OFFSET_TTL_MS) {
      known.ms = ms;
      known.at = receivedAt;
    }
  }

  async consume(key: string, plan: Plan): Promise<Decision> {
    // Fail fast while (re)connecting: a Cluster with auto-pipelining would otherwise hold the
    // command until the cluster is back, unbounded by the command timeout.
    if (this.client.status !== 'ready') throw new StoreUnavailableError(`redis: ${this.client.status}`);
    const keys = this.keys(key, plan);
    const shard = this.shardOf(key);
    const args: Array<string | number> = [plan.limits.length];
    for (const l of plan.limits) args.push(l.windowMs, l.requests);
    args.push(plan.quota?.requests ?? 0, plan.quota?.per ?? '', this.deadline(shard));
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
    const now = reply[1];
    if (now !== undefined) this.learnClock(shard, now, performance.now());
    if (reply[0] === 3)
      throw new StoreUnavailableError('redis: the command ran after its deadline (counted nothing)');
    const outcome = OUTCOMES[reply[0] ?? -1];
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

  async refund(key: string, plan: Plan, time: number): Promise<void> {
    const keys = this.keys(key, plan);
    const args: Array<string | number> = [plan.limits.length];
    for (const l of plan.limits) args.push(l.windowMs);
    args.push(plan.quota?.per ?? '', time);
    await this.command(keys.length, true)(...keys, ...args);
  }

  async peek(key: string, plan: Plan): Promise<StoredCounts> {
    if (this.client.status !== 'ready') throw new StoreUnavailableError(`redis: ${this.client.status}`);
    const keys = this.keys(key, plan);
    const reply = await this.command(keys.length, 'peek')(...keys, plan.limits.length);
    const at = (i: number): number => reply[i] ?? -1;
    const limits = plan.limits.map((_, i) =>
      at(1 + 3 * i) < 0
        ? undefined
        : { index: at(1 + 3 * i), current: Math.max(0, at(2 + 3 * i)), previous: Math.max(0, at(3 + 3 * i)) },
    );
    const q = 1 + 3 * plan.limits.length;
    const quota = plan.quota && at(q) >= 0 ? { period: at(q), used: Math.max(0, at(q + 1)) } : undefined;
    return { limits, quota, now: at(0) };
  }

  async reset(key: string, plan: Plan): Promise<void> {
    if (this.client.status !== 'ready') throw new StoreUnavailableError(`redis: ${this.client.status}`);
    // one hash tag: one slot, so one DEL is Cluster-safe
    await this.client.del(...this.keys(key, plan));
  }

  /**
   * On a Cluster, 'ready' means the slots are known; the connections to the masters are made
   * as they are learnt, and while one is connecting a command to it waits in its queue. So ready
   * also means every master connection is up: the first burst after a start does not wait for
   * handshakes. Each node's clock is read too, so the first calls carry a deadline.
   */
  async ready(timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    if (!(await untilReady(this.client, timeoutMs))) return false;
    if (this.cluster === null) {
      await this.readClock(this.client as Redis, '');
      return true;
    }
    const masters = this.cluster.nodes('master');
    for (const node of masters) if (node.status === 'wait') node.connect().catch(() => undefined);
    const up = await Promise.all(masters.map((node) => untilReady(node, deadline - Date.now())));
    await Promise.all(
      masters.map((n) => this.readClock(n, `${n.options.host ?? ''}:${n.options.port ?? ''}`)),
    );
    return up.every(Boolean);
  }

  /** learns a node's clock before the first request, so even the first ones get a deadline */
  private async readClock(node: Redis, shard: string): Promise<void> {
    if (node.status !== 'ready') return;
    try {
      const [sec, usec] = await node.time();
      this.learnClock(shard, Number(sec) * 1000 + Math.floor(Number(usec) / 1000), performance.now());
    } catch {
      // not reachable yet: learnt from the first reply instead
    }
  }

  async close(): Promise<void> {
    this.client.disconnect();
  }
}
