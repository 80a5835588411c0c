import { describe, expect, it } from 'vitest';
import type { CircuitBreakerConfig } from '../../src/config/schema.js';
import { CircuitBreaker, REJECTED, type BreakerState } from '../../src/upstream/circuit-breaker.js';
import { clockAt } from '../helpers/clock.js';

const config: CircuitBreakerConfig = {
  enabled: true,
  errorRate: 0.5,
  window: 10_000,
  minRequests: 20,
  openFor: 30_000,
  probes: 3,
};

function breaker(overrides: Partial<CircuitBreakerConfig> = {}) {
  let now = 1_000_000;
  const changes: BreakerState[] = [];
  const b = new CircuitBreaker(
    { ...config, ...overrides },
    (s) => changes.push(s),
    clockAt(() => now),
  );
  return {
    b,
    changes,
    advance: (ms: number) => (now += ms),
    /** one admitted request with this outcome */
    call(outcome: 'success' | 'failure' | 'cancelled') {
      const g = b.admit();
      expect(g).not.toBe(REJECTED);
      b.record(g, outcome);
    },
  };
}

describe('circuit breaker', () => {
  it('stays closed below minRequests, however many fail', () => {
    const t = breaker();
    for (let i = 0; i < 19; i++) t.call('failure');
    expect(t.b.state).toBe('closed');
    expect(t.changes).toEqual([]);
  });

  it('opens when the window holds minRequests and the error rate reaches errorRate', () => {
    const t = breaker();
    for (let i = 0; i < 10; i++) t.call('success');
    for (let i = 0; i < 9; i++) t.call('failure');
    expect(t.b.state).toBe('closed'); // 9 of 19
    t.call('failure'); // 10 of 20 = 0.5
    expect(t.b.state).toBe('open');
    expect(t.changes).toEqual(['open']);
    expect(t.b.admit()).toBe(REJECTED);
    expect(t.b.retryAfterMs()).toBe(30_000);
  });

  it('does not open below the error rate', () => {
    const t = breaker();
    for (let i = 0; i < 11; i++) t.call('success');
    for (let i = 0; i < 9; i++) t.call('failure'); // 9 of 20
    expect(t.b.state).toBe('closed');
  });

  it('forgets failures older than the window', () => {
    const t = breaker();
    for (let i = 0; i < 15; i++) t.call('failure');
    t.advance(10_001);
    for (let i = 0; i < 5; i++) t.call('failure');
    expect(t.b.counts()).toEqual({ total: 5, failed: 5 });
    expect(t.b.state).toBe('closed');
  });

  it('cancelled requests (client gone) count neither way', () => {
    const t = breaker({ minRequests: 2 });
    t.call('cancelled');
    t.call('cancelled');
    t.call('failure');
    expect(t.b.state).toBe('closed');
    expect(t.b.counts()).toEqual({ total: 1, failed: 1 });
  });

  it('after openFor lets `probes` requests through, and closes when they all succeed', () => {
    const t = breaker({ minRequests: 2, probes: 2 });
    t.call('failure');
    t.call('failure');
    expect(t.b.state).toBe('open');
    t.advance(29_999);
    expect(t.b.admit()).toBe(REJECTED);
    expect(t.b.retryAfterMs()).toBe(1);
    t.advance(1);
    expect(t.b.state).toBe('half-open');
    const p1 = t.b.admit();
    const p2 = t.b.admit();
    expect(p1).not.toBe(REJECTED);
    expect(p2).not.toBe(REJECTED);
    expect(t.b.admit()).toBe(REJECTED); // only two probes at once
    t.b.record(p1, 'success');
    expect(t.b.admit()).toBe(REJECTED); // still two taken (one done, one in flight)
    t.b.record(p2, 'success');
    expect(t.b.state).toBe('closed');
    expect(t.changes).toEqual(['open', 'half-open', 'closed']);
    expect(t.b.counts()).toEqual({ total: 0, failed: 0 }); // a fresh window
  });

  it('re-opens when a probe fails', () => {
    const t = breaker({ minRequests: 1 });
    t.call('failure');
    t.advance(30_000);
    const p = t.b.admit();
    t.b.record(p, 'failure');
    expect(t.b.state).toBe('open');
    expect(t.b.retryAfterMs()).toBe(30_000);
    expect(t.changes).toEqual(['open', 'half-open', 'open']);
  });

  it('a cancelled probe frees its slot', () => {
    const t = breaker({ minRequests: 1, probes: 1 });
    t.call('failure');
    t.advance(30_000);
    const p = t.b.admit();
    expect(t.b.admit()).toBe(REJECTED);
    t.b.record(p, 'cancelled');
    expect(t.b.admit()).not.toBe(REJECTED);
  });

  it('ignores late results of requests admitted before the breaker opened', () => {
    const t = breaker({ minRequests: 2, probes: 1 });
    const slow = t.b.admit(); // admitted while closed, answers much later
    t.call('failure');
    t.call('failure');
    t.advance(30_000);
    const probe = t.b.admit();
    t.b.record(slow, 'success'); // not a probe: must not close the breaker
    expect(t.b.state).toBe('half-open');
    t.b.record(probe, 'success');
    expect(t.b.state).toBe('closed');
  });

  it('does nothing when disabled', () => {
    const t = breaker({ enabled: false, minRequests: 1 });
    for (let i = 0; i < 50; i++) t.call('failure');
    expect(t.b.state).toBe('closed');
    expect(t.b.admit()).not.toBe(REJECTED);
  });
});

describe('wouldAdmit: what admit would answer, without taking anything', () => {
  it('agrees with admit in every state, and changes nothing', () => {
    const t = breaker({ minRequests: 1, probes: 2 });
    expect(t.b.wouldAdmit()).toBe(true); // closed
    t.call('failure');
    expect(t.b.state).toBe('open');
    expect(t.b.wouldAdmit()).toBe(false);
    t.advance(30_000);
    expect(t.b.wouldAdmit()).toBe(true); // open period over: admit would make it half-open
    expect(t.changes).toEqual(['open']); // no transition was made
    const first = t.b.admit();
    expect(first).not.toBe(REJECTED);
    expect(t.b.wouldAdmit()).toBe(true); // one probe slot left
    expect(t.b.admit()).not.toBe(REJECTED);
    expect(t.b.wouldAdmit()).toBe(false); // both taken
    expect(t.b.admit()).toBe(REJECTED);
    t.b.record(first, 'cancelled');
    expect(t.b.wouldAdmit()).toBe(true);
  });

  it('always admits when disabled', () => {
    const t = breaker({ enabled: false, minRequests: 1 });
    t.call('failure');
    expect(t.b.wouldAdmit()).toBe(true);
  });
});

describe('reset (the admin API)', () => {
  it('closes an open breaker at once, with an empty window; a late result is ignored', () => {
    const { b, changes, call } = breaker({ minRequests: 2 });
    const late = b.admit();
    call('failure');
    call('failure');
    expect(b.state).toBe('open');
    expect(b.admit()).toBe(REJECTED);
    b.reset();
    expect(b.state).toBe('closed');
    expect(changes).toEqual(['open', 'closed']);
    expect(b.counts()).toEqual({ total: 0, failed: 0 });
    // a request admitted before the reset does not count against the new window
    b.record(late, 'failure');
    expect(b.counts()).toEqual({ total: 0, failed: 0 });
    expect(b.admit()).not.toBe(REJECTED);
  });

  it('a closed breaker stays closed, its window emptied, no transition', () => {
    const { b, changes, call } = breaker({ minRequests: 3 });
    call('failure');
    b.reset();
    expect(changes).toEqual([]);
    expect(b.counts()).toEqual({ total: 0, failed: 0 });
  });
});
