import { describe, expect, it } from 'vitest';
import type { RetryConfig } from '../../src/config/schema.js';
import {
  RetryPolicy,
  decide,
  isIdempotent,
  parseRetryAfter,
  retryAfterOf,
  retryReasonOf,
  type RetryInput,
} from '../../src/upstream/retry-policy.js';
import { clockAt } from '../helpers/clock.js';

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
    const p = new RetryPolicy(
      { ...config, minRetries: 3 },
      clockAt(() => 0),
    );
    expect([p.takeRetry(), p.takeRetry(), p.takeRetry(), p.takeRetry()]).toEqual([true, true, true, false]);
  });

  it('keeps retries at or under budget × requests over the last 10 s', () => {
    let now = 0;
    const p = new RetryPolicy(
      { ...config, minRetries: 0 },
      clockAt(() => now),
    );
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

describe('decide: retry or not, and after how long (no socket, no sleep)', () => {
  const policy = new RetryPolicy(config);
  /** a GET whose first attempt was refused, 10 s before its deadline, with everything allowing a retry */
  const input = (over: Partial<RetryInput> = {}): RetryInput => ({
    attempt: 1,
    reason: 'connect-error',
    retryAfter: null,
    now: 1_000,
    deadline: 11_000,
    idempotent: true,
    clientGone: false,
    bodyRead: false,
    budgetLeft: true,
    breakerAdmits: true,
    random: () => 0,
    ...over,
  });

  it('retries after the backoff, its jitter from the injected source', () => {
    expect(decide(policy, input())).toEqual({ delayMs: 50 });
    expect(decide(policy, input({ random: () => 1 }))).toEqual({ delayMs: 100 });
    expect(decide(policy, input({ attempt: 2, random: () => 1 }))).toEqual({ delayMs: 200 });
    expect(decide(policy, input({ attempt: 2, random: () => 0.5 }))).toEqual({ delayMs: 125 });
  });

  it('names why it does not retry', () => {
    expect(decide(policy, input({ idempotent: false, reason: 'reset' }))).toEqual({ skip: 'not_idempotent' });
    expect(decide(policy, input({ idempotent: false, reason: 502 }))).toEqual({ skip: 'not_idempotent' });
    expect(decide(policy, input({ attempt: 3 }))).toEqual({ skip: 'attempts' });
    expect(decide(policy, input({ reason: 'timeout' }))).toEqual({ skip: 'not_on' });
    expect(decide(policy, input({ reason: 500 }))).toEqual({ skip: 'not_on' });
    expect(decide(policy, input({ clientGone: true }))).toEqual({ skip: 'client_gone' });
    expect(decide(policy, input({ bodyRead: true }))).toEqual({ skip: 'body_read' });
    expect(decide(policy, input({ budgetLeft: false }))).toEqual({ skip: 'budget' });
    expect(decide(policy, input({ breakerAdmits: false }))).toEqual({ skip: 'breaker' });
  });

  it('retries any method after connect-error (nothing was sent), unless its body was read', () => {
    expect(decide(policy, input({ idempotent: false }))).toEqual({ delayMs: 50 });
    expect(decide(policy, input({ idempotent: false, bodyRead: true }))).toEqual({ skip: 'body_read' });
    expect(decide(policy, input({ idempotent: false, reason: 'reset' }))).toEqual({ skip: 'not_idempotent' });
  });

  it('checks in a fixed order: the first check that fails names the skip', () => {
    const none = {
      idempotent: false,
      reason: 'reset' as const,
      attempt: 3,
      clientGone: true,
      bodyRead: true,
      budgetLeft: false,
    };
    expect(decide(policy, input({ ...none, breakerAdmits: false }))).toEqual({ skip: 'not_idempotent' });
    expect(decide(policy, input({ ...none, idempotent: true }))).toEqual({ skip: 'attempts' });
    expect(decide(policy, input({ retryAfter: 5_000, now: 10_990, budgetLeft: false }))).toEqual({
      skip: 'retry_after',
    });
    expect(decide(policy, input({ now: 10_990, budgetLeft: false }))).toEqual({ skip: 'deadline' });
    expect(decide(policy, input({ budgetLeft: false, breakerAdmits: false }))).toEqual({ skip: 'budget' });
  });

  it('waits for a Retry-After longer than the backoff, and refuses one over maxRetryAfter', () => {
    expect(decide(policy, input({ retryAfter: 1_500 }))).toEqual({ delayMs: 1_500 });
    expect(decide(policy, input({ retryAfter: 10, random: () => 1 }))).toEqual({ delayMs: 100 });
    expect(decide(policy, input({ retryAfter: 2_000 }))).toEqual({ delayMs: 2_000 });
    expect(decide(policy, input({ retryAfter: 2_001 }))).toEqual({ skip: 'retry_after' });
  });

  it('does not retry when the wait would end at or after the deadline', () => {
    expect(decide(policy, input({ now: 10_949 }))).toEqual({ delayMs: 50 });
    expect(decide(policy, input({ now: 10_950 }))).toEqual({ skip: 'deadline' });
    expect(decide(policy, input({ retryAfter: 1_000, now: 10_000 }))).toEqual({ skip: 'deadline' });
  });

  it('retries the statuses retry.on names', () => {
    expect(decide(policy, input({ reason: 503 }))).toEqual({ delayMs: 50 });
  });

  it('draws the jitter only when it computes a backoff', () => {
    let draws = 0;
    const random = () => (draws++, 0);
    decide(policy, input({ idempotent: false, reason: 'reset', random }));
    decide(policy, input({ retryAfter: 9_999, random }));
    expect(draws).toBe(0);
    decide(policy, input({ random }));
    expect(draws).toBe(1);
  });
});

describe('the retry budget, read apart from taken', () => {
  it('budgetLeft reads without taking; recordRetry takes', () => {
    const p = new RetryPolicy(
      { ...config, minRetries: 1 },
      clockAt(() => 0),
    );
    expect(p.budgetLeft()).toBe(true);
    expect(p.budgetLeft()).toBe(true);
    p.recordRetry();
    expect(p.budgetLeft()).toBe(false);
    expect(p.takeRetry()).toBe(false);
  });

  it("the policy's backoff uses its injected jitter source", () => {
    const p = new RetryPolicy(
      config,
      clockAt(() => 0),
      () => 1,
    );
    expect(p.backoff(2)).toBe(200);
  });
});

describe('Retry-After in a raw response head', () => {
  const raw = (...pairs: string[]) => pairs.map((v) => Buffer.from(v, 'latin1'));
  it('is found whatever its case, in ms', () => {
    expect(retryAfterOf(raw('Content-Type', 'text/plain', 'Retry-After', '2'))).toBe(2000);
    expect(retryAfterOf(raw('retry-after', ' 0 '))).toBe(0);
  });
  it('is null when absent or unreadable', () => {
    expect(retryAfterOf(raw('Content-Type', 'text/plain'))).toBeNull();
    expect(retryAfterOf(raw('Retry-After', 'soon'))).toBeNull();
  });
});
