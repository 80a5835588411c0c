/**
 * Durations the gateway measures itself (a circuit breaker's open period, an ejection, the
 * rate-limit store's breaker) run on the monotonic clock by default: a wall-clock step (NTP, a VM
 * resumed) neither stretches nor cuts them. Here the wall clock jumps 10 minutes back while a
 * breaker is open: with the wall clock as its clock, it would stay open 10 minutes more.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { CircuitBreakerConfig } from '../../src/config/schema.js';
import type { Plan } from '../../src/ratelimit/decision.js';
import { GuardedStore } from '../../src/ratelimit/guarded-store.js';
import type { RateLimitStore } from '../../src/ratelimit/store.js';
import { silentLogger } from '../../src/observability/logger.js';
import { CircuitBreaker, REJECTED } from '../../src/upstream/circuit-breaker.js';

const TEN_MINUTES = 10 * 60_000;

/**
 * A wall clock the test can step: `Date.now` is replaced before anything under test is built (a
 * default `Date.now` clock is taken when its object is constructed), and `stepBack` moves it.
 * performance.now() goes on as it was.
 */
let offset = 0;
const wallClockStepsBack = (ms: number) => (offset = ms);

beforeEach(() => {
  offset = 0;
  const real = Date.now.bind(Date);
  vi.spyOn(Date, 'now').mockImplementation(() => real() - offset);
});

afterEach(() => {
  vi.restoreAllMocks();
});

describe('monotonic durations', () => {
  it("a circuit breaker's open period is not stretched by a wall clock stepping back", () => {
    const config: CircuitBreakerConfig = {
      enabled: true,
      errorRate: 0.5,
      window: 10_000,
      minRequests: 1,
      openFor: 30_000,
      probes: 1,
    };
    const breaker = new CircuitBreaker(config);
    breaker.record(breaker.admit(), 'failure');
    expect(breaker.state).toBe('open');
    expect(breaker.admit()).toBe(REJECTED);
    wallClockStepsBack(TEN_MINUTES);
    expect(breaker.retryAfterMs()).toBeLessThanOrEqual(30_000);
  });

  it("the rate-limit store's breaker is not held open by a wall clock stepping back", async () => {
    let calls = 0;
    const failing: RateLimitStore = {
      kind: 'redis',
      consume: () => {
        calls++;
        return Promise.reject(new Error('down'));
      },
      ready: () => Promise.resolve(true),
      close: () => Promise.resolve(),
    };
    const plan: Plan = { tier: 't', limits: [{ requests: 5, windowMs: 60_000, name: '1m' }], quota: null };
    const guarded = new GuardedStore(failing, 'open', silentLogger(), { timeoutMs: 50 });
    expect(await guarded.consume('k', plan)).toBe('open');
    expect(guarded.isDegraded).toBe(true);
    expect(calls).toBe(1);
    wallClockStepsBack(TEN_MINUTES);
    // the open period is 250 ms: then the next request probes the store again (measured on the
    // wall clock, the period would end 10 minutes from now)
    await vi.waitFor(
      async () => {
        expect(await guarded.consume('k', plan)).toBe('open');
        expect(calls).toBe(2);
      },
      { timeout: 3000, interval: 50 },
    );
    await guarded.close();
  });
});
