import { describe, expect, it } from 'vitest';
import type { RetryConfig } from '../../src/config/schema.js';
import {
  RetryPolicy,
  isIdempotent,
  parseRetryAfter,
  retryReasonOf,
} from '../../src/upstream/retry-policy.js';

const config: RetryConfig = {
  attempts: 3,
  backoff: 50,
  maxBackoff: 1000,
  on: ['connect-error', 502, 503, 504],
  maxRetryAfter: 2000,
  budget: 0.2,
  minRetries: 10,
  deadline: 30_000,
};

describe('which requests may be retried', () => {
  it('idempotent methods, or any method with an Idempotency-Key', () => {
    for (const m of ['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'])
      expect(isIdempotent(m, { headers: {} })).toBe(true);
    for (const m of ['POST', 'PATCH', 'CONNECT', 'TRACE'])
      expect(isIdempotent(m, { headers: {} })).toBe(false);
    expect(isIdempotent('POST', { headers: { 'idempotency-key': 'k-123' } })).toBe(true);
    expect(isIdempotent('POST', { headers: { 'idempotency-key': '' } })).toBe(false);
    expect(isIdempotent('POST', { headers: { 'idempotency-key': ['a', 'b'] } })).toBe(false); // not one string: not trusted
  });

  it('maps failures onto retry.on entries', () => {
    expect(retryReasonOf('connect-error')).toBe('connect-error');
    expect(retryReasonOf('connect-timeout')).toBe('connect-error');
    expect(retryReasonOf('timeout')).toBe('timeout');
    expect(retryReasonOf('reset')).toBe('reset');
    expect(retryReasonOf('protocol')).toBe('reset');
    expect(retryReasonOf('client-gone')).toBeNull();
    expect(retryReasonOf('body-too-large')).toBeNull();
  });

  it('retries the statuses retry.on names, and only those', () => {
    const p = new RetryPolicy(config);
    expect(p.retriesStatus(503)).toBe(true);
    expect(p.retriesStatus(500)).toBe(false);
    expect(p.retriesStatus(404)).toBe(false);
    expect(p.retriesOn('connect-error')).toBe(true);
    expect(p.retriesOn('timeout')).toBe(false);
  });
});

describe('backoff', () => {
  const p = new RetryPolicy(config);
  it('is full jitter between backoff and an exponentially growing cap', () => {
    expect(p.backoff(1, 0)).toBe(50);
    expect(p.backoff(1, 1)).toBe(100);
    expect(p.backoff(2, 1)).toBe(200);
    expect(p.backoff(3, 1)).toBe(400);
    expect(p.backoff(3, 0.5)).toBe(225);
  });
  it('never exceeds maxBackoff', () => {
    expect(p.backoff(10, 1)).toBe(1000);
    for (let retry = 1; retry < 40; retry++) {
      const d = p.backoff(retry);
      expect(d).toBeGreaterThanOrEqual(50);
      expect(d).toBeLessThanOrEqual(1000);
    }
  });
});

describe('retry budget', () => {
  it('allows minRetries whatever the traffic', () => {
    const p = new RetryPolicy({ ...config, minRetries: 3 }, () => 0);
    expect([p.takeRetry(), p.takeRetry(), p.takeRetry(), p.takeRetry()]).toEqual([true, true, true, false]);
  });

  it('keeps retries at or under budget × requests over the last 10 s', () => {
    let now = 0;
    const p = new RetryPolicy({ ...config, minRetries: 0 }, () => now);
    for (let i = 0; i < 100; i++) p.countRequest();
    let granted = 0;
    for (let i = 0; i < 100; i++) if (p.takeRetry()) granted++;
    expect(granted).toBe(20);
    now += 10_001; // the window moved on: the budget is back, but so is its base
    expect(p.takeRetry()).toBe(false);
    for (let i = 0; i < 10; i++) p.countRequest();
    expect(p.takeRetry()).toBe(true);
    expect(p.takeRetry()).toBe(true);
    expect(p.takeRetry()).toBe(false);
  });
});

describe('Retry-After', () => {
  it('reads delta-seconds and HTTP dates', () => {
    expect(parseRetryAfter('3')).toBe(3000);
    expect(parseRetryAfter(' 0 ')).toBe(0);
    const now = Date.parse('2026-11-30T10:00:00Z');
    expect(parseRetryAfter('Mon, 30 Nov 2026 10:00:05 GMT', now)).toBe(5000);
    expect(parseRetryAfter('Mon, 30 Nov 2026 09:00:00 GMT', now)).toBe(0);
  });
  it('ignores absent and unreadable values', () => {
    expect(parseRetryAfter(undefined)).toBeNull();
    expect(parseRetryAfter('soon')).toBeNull();
    expect(parseRetryAfter('-1')).toBeNull();
    expect(parseRetryAfter('1.5')).toBeNull();
  });
});
