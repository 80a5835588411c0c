/** The memory store's bound (rateLimit.memory.maxEntries), with an injected clock. */
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.js';
import { GatewayMetrics } from '../../src/observability/metrics.js';
import type { Decision, Plan } from '../../src/ratelimit/decision.js';
import { GuardedStore } from '../../src/ratelimit/guarded-store.js';
import { createLimitStore, createRateLimiter } from '../../src/ratelimit/limiter.js';
import { DEFAULT_MAX_ENTRIES, MemoryStore } from '../../src/ratelimit/memory-store.js';
import type { RateLimitStore } from '../../src/ratelimit/store.js';

const MINUTE = 60_000;
const plan: Plan = { tier: 't', limits: [{ requests: 2, windowMs: MINUTE, name: '1m' }], quota: null };
const quotaPlan: Plan = { tier: 'q', limits: [], quota: { requests: 5, per: 'month' } };
const silent = pino({ level: 'silent' });

const closers: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  await Promise.all(closers.splice(0).map((c) => c.close()));
});

function store(maxEntries?: number) {
  const clock = { t: Date.UTC(2025, 0, 10, 12, 0, 0) };
  let evicted = 0;
  const s = new MemoryStore(() => clock.t, {
    ...(maxEntries === undefined ? {} : { maxEntries }),
    onEvict: () => evicted++,
  });
  closers.push(s);
  return { s, clock, evicted: () => evicted };
}

const outcome = (s: MemoryStore, key: string, p = plan) => s.consumeSync(key, p).outcome;

describe('the memory store, bounded', () => {
  it('keeps its size at the cap under a flood of distinct subjects, counting each eviction', () => {
    const { s, evicted } = store(1000);
    let largest = 0;
    let refused = 0;
    for (let i = 0; i < 20_000; i++) {
      if (outcome(s, `ip:2001:db8::${i.toString(16)}`) !== 'allowed') refused++;
      largest = Math.max(largest, s.size);
    }
    expect(refused).toBe(0);
    expect(largest).toBe(1000);
    expect(s.size).toBe(1000);
    expect(evicted()).toBe(19_000);
    expect(s.evictions).toBe(19_000);
  });

  it('evicts the least recently used subject, not the oldest one', () => {
    const { s } = store(2);
    outcome(s, 'a');
    outcome(s, 'a'); // a: limit reached
    outcome(s, 'b');
    expect(outcome(s, 'a')).toBe('rate_limited'); // a used again: b is now the least recent
    outcome(s, 'c'); // evicts b
    expect(outcome(s, 'a')).toBe('rate_limited'); // a kept its counts
    expect(s.size).toBe(2);
  });

  it('gives an evicted subject a fresh window: one more window of requests at most', () => {
    const { s } = store(1);
    expect([outcome(s, 'a'), outcome(s, 'a'), outcome(s, 'a')]).toEqual([
      'allowed',
      'allowed',
      'rate_limited',
    ]);
    outcome(s, 'b'); // evicts a
    expect([outcome(s, 'a'), outcome(s, 'a'), outcome(s, 'a')]).toEqual([
      'allowed',
      'allowed',
      'rate_limited',
    ]);
  });

  it('forgets a quota too when its subject is evicted', () => {
    const { s } = store(1);
    for (let i = 0; i < 5; i++) outcome(s, 'a', quotaPlan);
    expect(outcome(s, 'a', quotaPlan)).toBe('quota_exceeded');
    outcome(s, 'b', quotaPlan);
    expect(outcome(s, 'a', quotaPlan)).toBe('allowed');
  });

  it('does not count as evicted an entry whose windows have passed', () => {
    const { s, clock, evicted } = store(2);
    outcome(s, 'a');
    outcome(s, 'b');
    clock.t += 2 * MINUTE; // a and b have expired, not yet swept
    outcome(s, 'c');
    outcome(s, 'd');
    expect(s.size).toBe(2);
    expect(evicted()).toBe(0);
    outcome(s, 'e'); // c is live
    expect(evicted()).toBe(1);
  });

  it('holds 100 000 subjects by default', () => {
    expect(new MemoryStore().maxEntries).toBe(DEFAULT_MAX_ENTRIES);
    expect(new MemoryStore(Date.now, { maxEntries: 0 }).maxEntries).toBe(1);
  });
});

class DownStore implements RateLimitStore {
  readonly kind = 'redis' as const;
  consume(): Promise<Decision> {
    return Promise.reject(new Error('connection refused'));
  }
  ready(): Promise<boolean> {
    return Promise.resolve(false);
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

describe('the bound applies to the local fallback and is counted', () => {
  it('the onStoreError: local fallback keeps at most maxEntries subjects', async () => {
    let evicted = 0;
    const guard = new GuardedStore(new DownStore(), 'local', silent, {
      local: { maxEntries: 10, onEvict: () => evicted++ },
    });
    closers.push(guard);
    for (let i = 0; i < 100; i++)
      expect(await guard.consume(`ip:${i}`, plan)).toMatchObject({ outcome: 'allowed' });
    expect(evicted).toBe(90);
  });

  it('rateLimit.memory.maxEntries bounds the store and evictions reach gatehouse_ratelimit_memory_evictions_total', async () => {
    const loaded = loadConfigText(
      [
        'services: { s: { targets: [http://127.0.0.1:1] } }',
        'routes: [{ name: r, match: { path: /x }, service: s, rateLimit: ip }]',
        'rateLimit:',
        '  memory: { maxEntries: 3 }',
        '  tiers: { anonymous: { limits: [{ requests: 5, per: 1m }] } }',
      ].join('\n'),
      'gw.yaml',
      { env: {} },
    );
    if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
    expect(loaded.config.rateLimit.memory.maxEntries).toBe(3);
    const metrics = new GatewayMetrics();
    const store = createLimitStore(loaded.config, silent, metrics);
    closers.push(store);
    const limiter = createRateLimiter(loaded.config, store);
    const anonymous = limiter.plans.get('anonymous')!;
    for (let i = 0; i < 10; i++)
      await limiter.store.consume(limiter.keyFor('anonymous', `ip:10.0.0.${i}`), anonymous);
    expect((limiter.store.store as MemoryStore).size).toBe(3);
    expect(
      await metrics.registry.getSingleMetricAsString('gatehouse_ratelimit_memory_evictions_total'),
    ).toContain('gatehouse_ratelimit_memory_evictions_total{store="memory"} 7');
  });

  it('defaults to 100 000 and takes 1 to 10 000 000', () => {
    const problems = (yaml: string) => {
      const r = loadConfigText(yaml, 'gw.yaml', { env: {} });
      return r.ok ? r.config.rateLimit.memory.maxEntries : r.problems.map((p) => `${p.path}: ${p.message}`);
    };
    expect(problems('')).toBe(100_000);
    expect(problems('rateLimit: { memory: { maxEntries: 0 } }')).toEqual([
      'rateLimit.memory.maxEntries: must be at least 1',
    ]);
    expect(problems('rateLimit: { memory: { maxEntries: 20000000 } }')).toEqual([
      'rateLimit.memory.maxEntries: must be at most 10000000',
    ]);
  });
});
