import { describe, expect, it } from 'vitest';
import { LogSampler, type SamplerClock } from '../../src/observability/log-sampler.js';
import { refusalReason } from '../../src/observability/port-events.js';

/** A clock the test moves by hand; `later` callbacks run when their time comes. */
function manualClock(): SamplerClock & { advance(ms: number): void } {
  let now = 0;
  let timers: Array<{ at: number; fn: () => void }> = [];
  return {
    now: () => now,
    later: (ms, fn) => void timers.push({ at: now + ms, fn }),
    advance(ms) {
      now += ms;
      const due = timers.filter((t) => t.at <= now);
      timers = timers.filter((t) => t.at > now);
      for (const t of due) t.fn();
    },
  };
}

describe('LogSampler', () => {
  it('admits at most N lines a second and reports the rest once the second is over', () => {
    const clock = manualClock();
    const reports: number[] = [];
    const sampler = new LogSampler(3, (n) => reports.push(n), clock);
    const admitted = Array.from({ length: 10 }, () => sampler.admit());
    expect(admitted).toEqual([true, true, true, false, false, false, false, false, false, false]);
    expect(reports).toEqual([]);
    clock.advance(999);
    expect(sampler.admit()).toBe(false);
    expect(reports).toEqual([]);
    clock.advance(1);
    expect(reports).toEqual([8]);
    // a new window: N more lines, and nothing to report when none was left out
    expect([sampler.admit(), sampler.admit(), sampler.admit()]).toEqual([true, true, true]);
    clock.advance(5000);
    expect(reports).toEqual([8]);
  });

  it('reports each window that left lines out, once', () => {
    const clock = manualClock();
    const reports: number[] = [];
    const sampler = new LogSampler(1, (n) => reports.push(n), clock);
    for (let second = 0; second < 3; second++) {
      for (let i = 0; i < 5; i++) sampler.admit();
      clock.advance(1000);
    }
    expect(reports).toEqual([4, 4, 4]);
  });
});

describe('refusalReason', () => {
  it.each([
    'HPE_INVALID_HEADER_TOKEN',
    'HPE_HEADER_OVERFLOW',
    'ERR_HTTP_HEADERS_TIMEOUT',
    'ERR_HTTP_REQUEST_TIMEOUT',
  ])('keeps %s', (code) => expect(refusalReason(code)).toBe(code));

  it.each([undefined, '', 'EPIPE', 'HPE_', 'hpe_x', `HPE_${'A'.repeat(60)}`, 'HPE_A\nB'])(
    'maps %j to other',
    (code) => expect(refusalReason(code)).toBe('other'),
  );
});
