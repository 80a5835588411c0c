/** Counters in Redis (one node or a Cluster): one EVALSHA per batch of decisions (redis-script.ts). */
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Cluster, Redis } from 'ioredis';
// ioredis's own slot function (no exports map restricts it): the same routing as the client's
import calculateSlot from 'cluster-key-slot';
import { describe, type Decision, type Outcome, type Plan } from './decision.js';
import { PEEK_SCRIPT, RATE_LIMIT_BATCH_SCRIPT, REFUND_SCRIPT } from './redis-script.js';
import { StoreUnavailableError, type DecisionSink, type RateLimitStore, type StoredCounts } from './store.js';
import type { LimitState, QuotaState } from './window.js';

/** EVALSHA and EVAL of one node, with keys and arguments as one array */
type ArrayScriptCalls = {
  evalsha(sha: string, numKeys: number, keysAndArgs: ReadonlyArray<string | number>): Promise<number[]>;
  eval(script: string, numKeys: number, keysAndArgs: ReadonlyArray<string | number>): Promise<number[]>;
};

type ScriptCommand = (...keysAndArgs: Array<string | number>) => Promise<number[]>;

const OUTCOMES: readonly Outcome[] = ['allowed', 'rate_limited', 'quota_exceeded'];

/** EVALSHA's name for the batch script (one node; see `call`) */
const BATCH_SHA = createHash('sha1').update(RATE_LIMIT_BATCH_SCRIPT).digest('hex');

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
  /** most decisions per script call (default 128) */
  maxBatch?: number;
  /**
   * When a turn's batch is sent: 'immediate' (setImmediate, after the sockets read in this
   * turn; the default, see docs/rate-limiting.md) or 'microtask' (after the current callback).
   */
  flushOn?: 'immediate' | 'microtask';
};

/** a decision waiting for its batch */
class PendingDecision {
  constructor(
    readonly key: string,
    readonly plan: Plan,
    readonly sink: DecisionSink,
  ) {}
}
type Pending = PendingDecision;

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
  /** decisions waiting for the end of the turn, per Cluster slot (0 for a single node) */
  private readonly batches = new Map<number, Pending[]>();
  private flushScheduled = false;
  private readonly maxBatch: number;
  private readonly flushOn: 'immediate' | 'microtask';
  /** script calls sent and decisions they carried (round trips per decision = calls / decisions) */
  scriptCalls = 0;
  decisions = 0;

  constructor(
    private readonly client: Redis | Cluster,
    options: RedisStoreOptions = {},
  ) {
    this.kind = client.isCluster ? 'redis-cluster' : 'redis';
    this.cluster = client.isCluster ? (client as Cluster) : null;
    this.expireAfterMs = options.expireAfterMs ?? 0;
    this.maxBatch = Math.max(1, options.maxBatch ?? 128);
    this.flushOn = options.flushOn ?? 'immediate';
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
  private command(numKeys: number, script: 'batch' | 'refund' | 'peek'): ScriptCommand {
    const kind = script === 'peek' ? 'Peek' : script === 'refund' ? 'Refund' : 'RateLimitBatch';
    const name = `gatehouse${kind}${numKeys}`;
    let command = this.commands.get(name);
    if (command === undefined) {
      this.client.defineCommand(name, {
        lua: script === 'peek' ? PEEK_SCRIPT : script === 'refund' ? REFUND_SCRIPT : RATE_LIMIT_BATCH_SCRIPT,
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

  /**
   * Decides `key` under `plan` in the next batch of its slot (redis-script.ts,
   * RATE_LIMIT_BATCH_SCRIPT): every decision asked for in this event-loop turn for one node (a
   * single node: all of them; a Cluster: those of one slot) goes out in one script call when
   * the turn ends, at most `maxBatch` per call. A batch that fails fails each of its decisions.
   */
  consume(key: string, plan: Plan): Promise<Decision> {
    return new Promise<Decision>((resolve, reject) => this.consumeInto(key, plan, { resolve, reject }));
  }

  /** `consume`, the decision handed to `sink` (GuardedStore: no promise of the store's own) */
  consumeInto(key: string, plan: Plan, sink: DecisionSink): void {
    // Fail fast while (re)connecting: a Cluster with auto-pipelining would otherwise hold the
    // command until the cluster is back, unbounded by the command timeout.
    if (this.client.status !== 'ready') {
      sink.reject(new StoreUnavailableError(`redis: ${this.client.status}`));
      return;
    }
    const group = this.cluster === null ? 0 : calculateSlot(key);
    let batch = this.batches.get(group);
    if (batch === undefined) {
      batch = [];
      this.batches.set(group, batch);
    }
    batch.push(new PendingDecision(key, plan, sink));
    if (batch.length >= this.maxBatch) {
      this.batches.delete(group);
      this.send(key, batch);
    } else if (!this.flushScheduled) {
      this.flushScheduled = true;
      if (this.flushOn === 'microtask') queueMicrotask(this.flush);
      else setImmediate(this.flush);
    }
  }

  /** sends every pending batch (bound: handed to setImmediate/queueMicrotask as is) */
  private readonly flush = (): void => {
    this.flushScheduled = false;
    if (this.batches.size === 0) return;
    for (const entries of this.batches.values()) {
      const first = entries[0];
      if (first !== undefined) this.send(first.key, entries);
    }
    this.batches.clear();
  };

  /** one script call for `entries` (all on the slot of `key`, the first one's) */
  private send(key: string, entries: readonly Pending[]): void {
    const shard = this.shardOf(key);
    const keys: string[] = [];
    const args: Array<string | number> = [entries.length, this.deadline(shard)];
    for (const { key: k, plan } of entries) {
      for (const l of plan.limits) keys.push(`${k}:${l.name}`);
      if (plan.quota) keys.push(`${k}:q:${plan.quota.per}`);
      args.push(plan.limits.length);
      for (const l of plan.limits) args.push(l.windowMs, l.requests);
      args.push(plan.quota?.requests ?? 0, plan.quota?.per ?? '');
    }
    this.scriptCalls++;
    this.decisions += entries.length;
    this.call(keys, args).then(
      (reply) => this.settle(shard, entries, reply),
      (err: unknown) => {
        // A node lost, restarted or replaced: MOVED errors (which auto-pipelining does not follow
        // when a pipeline's replies differ) or closed connections. Re-read the slot map now
        // (ioredis runs one refresh at a time) rather than at the next periodic refresh.
        if (this.client.isCluster) (this.client as Cluster).refreshSlotsCache();
        const e = new StoreUnavailableError(`redis: ${(err as Error).message}`, { cause: err });
        for (const p of entries) p.sink.reject(e);
      },
    );
  }

  /**
   * The batch script on `keys` with `args`. One node: EVALSHA with the keys and arguments as one
   * array (ioredis flattens it: no spreading of a few hundred arguments through three calls, as
   * a defined command does), and EVAL when Redis answers NOSCRIPT (a restart, a SCRIPT FLUSH, or
   * the first call), which loads it again. A Cluster keeps the defined command: its
   * auto-pipelining groups commands by their first argument, which must be a key.
   */
  private call(keys: string[], args: Array<string | number>): Promise<number[]> {
    if (this.cluster !== null) return this.command(keys.length, 'batch')(...keys, ...args);
    // ioredis flattens array arguments (Command: args.flat()); its typings do not say so
    const client = this.client as unknown as ArrayScriptCalls;
    const numKeys = keys.length;
    const all: Array<string | number> = keys; // keys, then the arguments
    for (let i = 0; i < args.length; i++) all.push(args[i] as string | number);
    return client.evalsha(BATCH_SHA, numKeys, all).catch((err: unknown) => {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return client.eval(RATE_LIMIT_BATCH_SCRIPT, numKeys, all);
    });
  }

  private settle(shard: string, entries: readonly Pending[], reply: number[]): void {
    const now = reply[1];
    if (now !== undefined) this.learnClock(shard, now, performance.now());
    if (reply[0] === 3 || reply[0] !== 0 || now === undefined) {
      const e = new StoreUnavailableError(
        reply[0] === 3
          ? 'redis: the command ran after its deadline (counted nothing)'
          : 'redis: malformed reply',
      );
      for (const p of entries) p.sink.reject(e);
      return;
    }
    let at = 2;
    for (const { plan, sink } of entries) {
      const outcome = OUTCOMES[reply[at] ?? -1];
      const states: LimitState[] = [];
      for (let i = 0; i < plan.limits.length; i++) {
        const o = at + 1 + 3 * i;
        states.push({ index: reply[o] ?? 0, current: reply[o + 1] ?? 0, previous: reply[o + 2] ?? 0 });
      }
      const q = at + 1 + 3 * plan.limits.length;
      at = q + 2;
      // never decide on the gateway's clock
      if (outcome === undefined || reply.length < at) {
        sink.reject(new StoreUnavailableError('redis: malformed reply'));
        continue;
      }
      const quota: QuotaState | null = plan.quota ? { period: reply[q] ?? 0, used: reply[q + 1] ?? 0 } : null;
      sink.resolve(describe(plan, outcome, states, quota, now));
    }
  }

  async refund(key: string, plan: Plan, time: number): Promise<void> {
    const keys = this.keys(key, plan);
    const args: Array<string | number> = [plan.limits.length];
    for (const l of plan.limits) args.push(l.windowMs);
    args.push(plan.quota?.per ?? '', time);
    await this.command(keys.length, 'refund')(...keys, ...args);
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
