/** The breaker and failure policy around the shared store, with an injected clock. */
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Decision, Plan } from '../../src/ratelimit/decision.js';
import {
  GuardedStore,
  StoreTimeoutError,
  MAX_OPEN_MS,
  MIN_OPEN_MS,
  type FailurePolicy,
  type GuardedDecision,
} from '../../src/ratelimit/guarded-store.js';
import type { RateLimitStore } from '../../src/ratelimit/store.js';

const plan: Plan = { tier: 't', limits: [{ requests: 3, windowMs: 60_000, name: '1m' }], quota: null };
const fromStore: Decision = { outcome: 'allowed', retryAfterSec: 0, policies: [], tightest: 0, time: 0 };

type Deferred = { resolve(d: Decision): void; reject(e: Error): void };

/** A store whose every call waits for the test to settle it (or settles at once in `mode`). */
class ScriptedStore implements RateLimitStore {
  readonly kind = 'redis' as const;
  calls = 0;
  mode: 'up' | 'down' | 'manual' = 'up';
  pending: Deferred[] = [];
  consume(): Promise<Decision> {
    this.calls++;
    if (this.mode === 'up') return Promise.resolve(fromStore);
    if (this.mode === 'down') return Promise.reject(new Error('connection refused'));
    return new Promise((resolve, reject) => this.pending.push({ resolve, reject }));
  }
  ready(): Promise<boolean> {
    return Promise.resolve(true);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

function setup(policy: FailurePolicy = 'closed', probe?: () => Promise<unknown>) {
  let t = 1_000_000;
  const logs: Array<{ level: number; msg: string }> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line)) });
  const store = new ScriptedStore();
  const guard = new GuardedStore(store, policy, logger, {
    now: () => t,
    ...(probe ? { probe } : {}),
  });
  return {
    store,
    guard,
    logs,
    advance: (ms: number) => (t += ms),
    call: async (): Promise<GuardedDecision> => guard.consume('k', plan),
    transitions: () => logs.map((l) => `${l.level === 40 ? 'warn' : 'info'}: ${l.msg}`),
  };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('GuardedStore breaker', () => {
  it('passes through while the store is up', async () => {
    const { store, call, guard, logs } = setup();
    expect(await call()).toBe(fromStore);
    expect(await call()).toBe(fromStore);
    expect(store.calls).toBe(2);
    expect(guard.isDegraded).toBe(false);
    expect(guard.degradedDecisions).toBe(0);
    expect(logs).toEqual([]);
  });

  it('trips on a failure, skips the store while open, probes once when the period ends', async () => {
    const { store, call, guard, advance, transitions } = setup('closed');
    store.mode = 'down';
    expect(await call()).toBe('closed'); // the failing request itself gets the policy
    expect(guard.isDegraded).toBe(true);
    expect(store.calls).toBe(1);
    for (let i = 0; i < 10; i++) {
      advance(MIN_OPEN_MS / 20);
      expect(await call()).toBe('closed');
    }
    expect(store.calls).toBe(1); // skipped while open
    advance(MIN_OPEN_MS); // period over: the next request is the probe
    store.mode = 'manual';
    const probe = guard.consume('k', plan);
    expect(store.calls).toBe(2);
    // while the probe is in flight, the others are decided by the policy without the store
    for (let i = 0; i < 5; i++) expect(await call()).toBe('closed');
    expect(store.calls).toBe(2);
    store.pending.shift()!.resolve(fromStore);
    expect(await probe).toBe(fromStore);
    expect(guard.isDegraded).toBe(false);
    store.mode = 'up';
    expect(await call()).toBe(fromStore); // back on the store
    expect(store.calls).toBe(3);
    expect(guard.degradedDecisions).toBe(1 + 10 + 5);
    expect(guard.storeErrors).toBe(1);
    expect(transitions()).toEqual([
      'warn: rate-limit store unavailable: degraded mode',
      'info: rate-limit store recovered',
    ]);
  });

  it('doubles the open period after each failed probe, up to the cap; resets after recovery', async () => {
    const { store, call, guard, advance, transitions } = setup('open');
    store.mode = 'down';
    await call();
    const periods: number[] = [];
    for (let i = 0; i < 8; i++) {
      periods.push(guard.openPeriodMs);
      const before = store.calls;
      advance(guard.openPeriodMs - 1);
      expect(await call()).toBe('open');
      expect(store.calls).toBe(before); // 1 ms early: still open
      advance(1);
      expect(await call()).toBe('open'); // the probe, failing
      expect(store.calls).toBe(before + 1);
    }
    expect(periods).toEqual([250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
    expect(guard.openPeriodMs).toBe(MAX_OPEN_MS);
    store.mode = 'up';
    advance(MAX_OPEN_MS);
    expect(await call()).toBe(fromStore);
    expect(guard.isDegraded).toBe(false);
    expect(guard.openPeriodMs).toBe(MIN_OPEN_MS);
    // one warn and one info for the whole outage, however many probes failed
    expect(transitions()).toEqual([
      'warn: rate-limit store unavailable: degraded mode',
      'info: rate-limit store recovered',
    ]);
    expect(guard.storeErrors).toBe(9);
    expect(guard.trips).toBe(1);
  });

  it('many requests failing together trip once: the open period does not compound', async () => {
    const { store, guard, advance, transitions } = setup('closed');
    store.mode = 'manual';
    const inFlight = Array.from({ length: 50 }, () => guard.consume('k', plan));
    expect(store.calls).toBe(50);
    for (const d of store.pending.splice(0)) d.reject(new Error('Command timed out'));
    expect(await Promise.all(inFlight)).toEqual(Array(50).fill('closed'));
    expect(guard.openPeriodMs).toBe(MIN_OPEN_MS);
    expect(guard.trips).toBe(1);
    expect(guard.storeErrors).toBe(50);
    advance(MIN_OPEN_MS);
    store.mode = 'up';
    expect(await guard.consume('k', plan)).toBe(fromStore);
    expect(transitions()).toHaveLength(2);
  });

  it('a request sent before the trip that fails late does not extend the open period', async () => {
    const { store, guard, advance } = setup('closed');
    store.mode = 'manual';
    const early = guard.consume('k', plan);
    const late = guard.consume('k', plan);
    store.pending.shift()!.reject(new Error('Command timed out'));
    await early;
    advance(200);
    store.pending.shift()!.reject(new Error('Command timed out'));
    await late;
    advance(MIN_OPEN_MS - 200); // the period counts from the first failure
    store.mode = 'up';
    expect(await guard.consume('k', plan)).toBe(fromStore);
  });

  it('local: counts in this process while degraded, exactly the limit', async () => {
    const { store, call, guard, advance } = setup('local');
    store.mode = 'down';
    const outcomes: string[] = [];
    for (let i = 0; i < 10; i++) {
      const d = await call();
      outcomes.push(typeof d === 'string' ? d : d.outcome);
      advance(10);
    }
    expect(outcomes).toEqual([...Array(3).fill('allowed'), ...Array(7).fill('rate_limited')]);
    expect(guard.degradedDecisions).toBe(10);
  });

  it('a background probe recovers without traffic, and keeps backing off while it fails', async () => {
    vi.useFakeTimers();
    let up = false;
    let pings = 0;
    const probe = () => {
      pings++;
      return up ? Promise.resolve('PONG') : Promise.reject(new Error('connect ECONNREFUSED'));
    };
    let t = 0;
    const logger = pino({ level: 'silent' });
    const store = new ScriptedStore();
    const guard = new GuardedStore(store, 'closed', logger, { now: () => t, probe });
    const tick = async (ms: number) => {
      t += ms;
      await vi.advanceTimersByTimeAsync(ms);
    };
    store.mode = 'down';
    await guard.consume('k', plan);
    expect(guard.isDegraded).toBe(true);
    await tick(MIN_OPEN_MS);
    expect(pings).toBe(1);
    expect(guard.openPeriodMs).toBe(2 * MIN_OPEN_MS);
    await tick(2 * MIN_OPEN_MS);
    expect(pings).toBe(2);
    up = true;
    await tick(4 * MIN_OPEN_MS);
    expect(pings).toBe(3);
    expect(guard.isDegraded).toBe(false);
    expect(store.calls).toBe(1); // no request was used to probe
    // recovered on a PING only: if the real call fails again, the back-off keeps growing
    await guard.consume('k', plan);
    expect(guard.openPeriodMs).toBe(8 * MIN_OPEN_MS);
    store.mode = 'up';
    guard.hint('available'); // e.g. the connection became ready again: probe at once
    await vi.advanceTimersByTimeAsync(0);
    expect(pings).toBe(4);
    expect(guard.isDegraded).toBe(false);
    expect(await guard.consume('k', plan)).toBe(fromStore);
    await guard.close();
  });

  it('starts degraded when the store is not reachable at start', async () => {
    const { guard, store, call, logs } = setup('closed');
    guard.hint('unavailable', 'not reachable at start');
    expect(guard.isDegraded).toBe(true);
    expect(await call()).toBe('closed');
    expect(store.calls).toBe(0);
    expect(logs.map((l) => l.msg)).toEqual(['rate-limit store unavailable: degraded mode']);
  });
});

describe('GuardedStore timeout', () => {
  it('a store that does not answer is given up on after the timeout; the policy answers', async () => {
    const store = new ScriptedStore();
    store.mode = 'manual';
    const logs: Array<{ err?: string }> = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line)) });
    const guard = new GuardedStore(store, 'closed', logger, { timeoutMs: 30 });
    const start = performance.now();
    expect(await guard.consume('k', plan)).toBe('closed');
    const ms = performance.now() - start;
    expect(ms).toBeGreaterThanOrEqual(29);
    expect(ms).toBeLessThan(1000);
    expect(guard.isDegraded).toBe(true);
    expect(logs[0]?.err).toBe(new StoreTimeoutError(30).message);
    // the answer that comes later changes nothing
    store.pending.shift()!.resolve(fromStore);
    await new Promise((r) => setImmediate(r));
    expect(guard.isDegraded).toBe(true);
  });

  it('a reply that arrived while the event loop was blocked past the timeout is not a timeout', async () => {
    // a loopback server on another thread answers at once: the reply sits in our socket while
    // this thread is busy
    const worker = new Worker(
      `const { createServer } = require('node:net');
       const { parentPort } = require('node:worker_threads');
       const server = createServer((s) => s.on('data', () => s.write('+OK\\r\\n')));
       server.listen(0, '127.0.0.1', () => parentPort.postMessage(server.address().port));`,
      { eval: true },
    );
    const port = await new Promise<number>((r) => worker.once('message', r));
    const socket: Socket = connect(port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    const store = new ScriptedStore();
    store.consume = () =>
      new Promise((resolve) => {
        socket.once('data', () => resolve(fromStore));
        socket.write('PING\r\n');
      });
    const guard = new GuardedStore(store, 'closed', pino({ level: 'silent' }), { timeoutMs: 20 });
    try {
      const decision = guard.consume('k', plan);
      const until = performance.now() + 100; // a burst, a GC pause: the loop is busy for 100 ms
      while (performance.now() < until);
      expect(await decision).toBe(fromStore);
      expect(guard.isDegraded).toBe(false);
    } finally {
      socket.destroy();
      await worker.terminate();
    }
  });
});

/** A store of two shards (keys `a...` and `b...`), each up or down on its own. */
class ShardedStore extends ScriptedStore {
  down = new Set<string>();
  error = 'connect ECONNREFUSED';
  live = ['a', 'b'];
  byShard: Record<string, number> = { a: 0, b: 0 };
  shardOf(key: string): string {
    return key.slice(0, 1);
  }
  shards(): readonly string[] {
    return this.live;
  }
  override consume(key?: string): Promise<Decision> {
    const shard = (key ?? 'a').slice(0, 1);
    this.calls++;
    this.byShard[shard] = (this.byShard[shard] ?? 0) + 1;
    return this.down.has(shard) ? Promise.reject(new Error(this.error)) : Promise.resolve(fromStore);
  }
}

function sharded(probe?: (key: string | null) => Promise<unknown>) {
  let t = 1_000_000;
  const logs: Array<{ level: number; msg: string; node?: string }> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line)) });
  const store = new ShardedStore();
  const guard = new GuardedStore(store, 'closed', logger, { now: () => t, ...(probe ? { probe } : {}) });
  return {
    store,
    guard,
    logs,
    advance: (ms: number) => (t += ms),
    transitions: () => logs.map((l) => `${l.level === 40 ? 'warn' : 'info'}: ${l.msg}`),
  };
}

describe('GuardedStore on a Cluster: one breaker per shard', () => {
  it("a failing shard's callers meet the policy; the other shard's are still decided by the store", async () => {
    const { store, guard, advance, transitions, logs } = sharded();
    store.down.add('a');
    expect(await guard.consume('a1', plan)).toBe('closed');
    expect(guard.isDegraded).toBe(true);
    expect(guard.isUnavailable).toBe(false); // shard b has not failed
    for (let i = 0; i < 5; i++) {
      expect(await guard.consume('a1', plan)).toBe('closed'); // skipped: its breaker is open
      expect(await guard.consume('b1', plan)).toBe(fromStore);
    }
    expect(store.byShard).toEqual({ a: 1, b: 5 });
    expect(guard.degradedDecisions).toBe(6);
    // b fails too: the whole store is unavailable (readiness under `closed`); still one warn
    store.down.add('b');
    expect(await guard.consume('b1', plan)).toBe('closed');
    expect(guard.isUnavailable).toBe(true);
    expect(logs[0]?.node).toBe('a');
    store.down.clear();
    advance(MIN_OPEN_MS);
    expect(await guard.consume('a1', plan)).toBe(fromStore);
    expect(guard.isDegraded).toBe(true); // b still open
    expect(await guard.consume('b1', plan)).toBe(fromStore);
    expect(guard.isDegraded).toBe(false);
    expect(transitions()).toEqual([
      'warn: rate-limit store unavailable: degraded mode',
      'info: rate-limit store recovered',
    ]);
    expect(guard.trips).toBe(1);
  });

  it('a node answering CLUSTERDOWN is probed every 250 ms, not on a doubling wait', async () => {
    const { store, guard, advance } = sharded();
    store.down.add('a');
    store.error = 'CLUSTERDOWN The cluster is down';
    await guard.consume('a1', plan);
    for (let i = 0; i < 6; i++) {
      expect(guard.openPeriodMs).toBe(MIN_OPEN_MS);
      advance(MIN_OPEN_MS);
      await guard.consume('a1', plan); // the probe, failing with CLUSTERDOWN
    }
    expect(store.byShard.a).toBe(7);
    // a lost connection does back off
    store.error = 'Connection is closed.';
    advance(MIN_OPEN_MS);
    await guard.consume('a1', plan);
    expect(guard.openPeriodMs).toBe(2 * MIN_OPEN_MS);
  });

  it('probes with a key of the failed shard, and drops the breaker of a master that left', async () => {
    vi.useFakeTimers();
    const probed: Array<string | null> = [];
    const { store, guard, advance, transitions } = sharded((key) => {
      probed.push(key);
      return Promise.reject(new Error('connect ECONNREFUSED'));
    });
    store.down.add('a');
    await guard.consume('a-some-caller', plan);
    advance(MIN_OPEN_MS);
    await vi.advanceTimersByTimeAsync(MIN_OPEN_MS);
    expect(probed).toEqual(['a-some-caller']);
    // a failover: the slot map no longer has master `a` (its slots have a new owner)
    store.live = ['b', 'c'];
    guard.hint('available');
    expect(guard.isDegraded).toBe(false);
    expect(transitions()).toEqual([
      'warn: rate-limit store unavailable: degraded mode',
      'info: rate-limit store recovered',
    ]);
    await guard.close();
  });
});

describe('GuardedStore: the timeout counts from the write, and late admissions are taken back', () => {
  /** answers `replyMs` after the end of the event-loop turn that called it (an auto-pipeline) */
  class PipelinedStore extends ScriptedStore {
    replyMs = 30;
    refunded: Array<[string, number]> = [];
    override consume(): Promise<Decision> {
      this.calls++;
      const ms = this.replyMs;
      return new Promise((resolve) =>
        setImmediate(() => setTimeout(() => resolve({ ...fromStore, time: 42 }), ms)),
      );
    }
    refund(key: string, _plan: Plan, time: number): Promise<void> {
      this.refunded.push([key, time]);
      return Promise.resolve();
    }
  }

  it('a loop busy after the call (the rest of a burst) does not eat into the budget', async () => {
    const store = new PipelinedStore();
    const guard = new GuardedStore(store, 'closed', pino({ level: 'silent' }), {
      timeoutMs: 50,
      coldTimeoutMs: 50,
    });
    const decision = guard.consume('k', plan);
    const until = performance.now() + 100; // the same turn goes on for 100 ms
    while (performance.now() < until);
    expect(await decision).toEqual({ ...fromStore, time: 42 });
    expect(guard.isDegraded).toBe(false);
  });

  it('a shard that has not answered yet gets the cold budget, then the short one', async () => {
    const store = new PipelinedStore();
    store.replyMs = 80;
    const guard = new GuardedStore(store, 'closed', pino({ level: 'silent' }), {
      timeoutMs: 30,
      coldTimeoutMs: 1000,
    });
    expect(await guard.consume('k', plan)).toEqual({ ...fromStore, time: 42 });
    expect(await guard.consume('k', plan)).toBe('closed');
  });

  it('an admission that arrives after the timeout is refunded, once', async () => {
    vi.useFakeTimers({
      toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'clearImmediate', 'performance'],
    });
    try {
      const store = new PipelinedStore();
      store.replyMs = 60;
      const guard = new GuardedStore(store, 'closed', pino({ level: 'silent' }), { timeoutMs: 20 });
      let decision: unknown = null;
      void Promise.resolve(guard.consume('k1', plan)).then((d) => (decision = d));
      await vi.advanceTimersByTimeAsync(30);
      expect(decision).toBe('closed');
      await vi.advanceTimersByTimeAsync(70); // the reply arrives at 60 ms
      expect(store.refunded).toEqual([['k1', 42]]);
      expect(guard.refunds).toBe(1);
    } finally {
      vi.useRealTimers();
    }
  });
});
