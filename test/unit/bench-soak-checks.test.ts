import { describe, expect, it } from 'vitest';
import {
  accessLogAccounting,
  accountingChecks,
  flatness,
  floors,
  gatewayRequests,
  median,
  parsePrometheus,
  slopePerSecond,
  type Point,
} from '../../bench/lib/soak-checks.js';

/** one point every `every` seconds over `seconds`, valued by f(t) */
const series = (seconds: number, every: number, f: (t: number) => number): Point[] =>
  Array.from({ length: Math.floor(seconds / every) + 1 }, (_, i) => ({ t: i * every, v: f(i * every) }));

describe('slopePerSecond', () => {
  it('is the least-squares slope', () => {
    expect(slopePerSecond(series(100, 1, (t) => 3 + 0.5 * t))).toBeCloseTo(0.5, 10);
    // symmetric noise around a flat line: no slope
    expect(
      slopePerSecond([
        { t: 0, v: 1 },
        { t: 1, v: 3 },
        { t: 2, v: 1 },
        { t: 3, v: 3 },
        { t: 4, v: 1 },
        { t: 5, v: 3 },
        { t: 6, v: 1 },
      ]),
    ).toBeCloseTo(0, 10);
  });

  it('is 0 without two distinct times', () => {
    expect(slopePerSecond([])).toBe(0);
    expect(slopePerSecond([{ t: 1, v: 5 }])).toBe(0);
    expect(
      slopePerSecond([
        { t: 1, v: 5 },
        { t: 1, v: 9 },
      ]),
    ).toBe(0);
  });
});

describe('median', () => {
  it('takes the middle, or the mean of the middle two', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });
});

describe('flatness', () => {
  const rule = { maxSlopePerMin: 1, tolerance: 0.1 };

  it('accepts a level series', () => {
    const v = flatness(
      series(600, 5, () => 80),
      rule,
    );
    expect(v.ok).toBe(true);
    expect(v.slopePerMin).toBeCloseTo(0, 10);
    expect(v.samples).toBe(61); // t = 300 … 600
    expect(v.reasons).toEqual([]);
  });

  it('accepts a GC sawtooth whose peaks stay level, whatever its phase at the end', () => {
    // 60 s teeth from 70 to 100 MB: the median of the second half would move with the phase
    const saw = series(600, 5, (t) => 70 + ((t % 60) / 60) * 30);
    expect(flatness(saw, rule).ok).toBe(true);
  });

  it('refuses growth in the second half above the slope limit', () => {
    // flat, then 2 MB/min from the middle: a leak that starts late
    const leak = series(600, 5, (t) => (t < 300 ? 80 : 80 + ((t - 300) / 60) * 2));
    const v = flatness(leak, rule);
    expect(v.ok).toBe(false);
    expect(v.slopePerMin).toBeCloseTo(2, 6);
    expect(v.reasons.join()).toMatch(/slope 2\/min > 1\/min/);
  });

  it('ignores growth in the first half (warm-up: JIT, heap sizing, pools filling)', () => {
    const warm = series(600, 5, (t) => (t < 200 ? 40 + t / 5 : 80));
    expect(flatness(warm, rule).ok).toBe(true);
  });

  it('refuses a late jump the slope alone would let pass', () => {
    const jump = series(600, 5, (t) => (t >= 590 ? 100 : 80));
    const v = flatness(jump, { maxSlopePerMin: 10, tolerance: 0.1 });
    expect(v.ok).toBe(false);
    expect(v.lastQuarterMax).toBe(100);
    expect(v.thirdQuarterMax).toBe(80);
    expect(v.limit).toBeCloseTo(88, 10);
  });

  it('allows small integer series a slack of units', () => {
    const sockets = series(600, 5, (t) => (t >= 500 && t % 10 === 0 ? 44 : 40));
    expect(flatness(sockets, { maxSlopePerMin: 1, tolerance: 0.05 }).ok).toBe(false);
    expect(flatness(sockets, { maxSlopePerMin: 1, tolerance: 0.05, slack: 4 }).ok).toBe(true);
  });

  it('refuses too few samples to judge', () => {
    const v = flatness(
      series(4, 2, () => 1),
      rule,
    );
    expect(v.ok).toBe(false);
    expect(v.reasons.join()).toMatch(/only 2 samples/);
  });
});

describe('floors', () => {
  it('keeps the minimum of each window, at its middle', () => {
    const pts = series(10, 1, (t) => [5, 9, 7, 3, 8, 6, 6, 4, 9, 9, 1][t] ?? 0);
    expect(floors(pts, 4)).toEqual([
      { t: 2, v: 3 },
      { t: 6, v: 4 },
      { t: 10, v: 1 },
    ]);
    expect(floors([], 4)).toEqual([]);
  });

  it('levels a sawtooth whose amplitude follows the load, and keeps a leak', () => {
    // 30 s teeth whose peak doubles from t = 450 (the load rose), floor at 120 throughout
    const busier = series(600, 5, (t) => 120 + ((t % 30) / 30) * (t < 450 ? 15 : 40));
    expect(flatness(busier, { maxSlopePerMin: 2, tolerance: 0.1 }).ok).toBe(false);
    expect(flatness(floors(busier, 60), { maxSlopePerMin: 2, tolerance: 0.1 }).ok).toBe(true);
    // the same teeth on a floor that rises 3 MB a minute
    const leak = series(600, 5, (t) => 120 + (t / 60) * 3 + ((t % 30) / 30) * 15);
    const v = flatness(floors(leak, 60), { maxSlopePerMin: 2, tolerance: 0.1 });
    expect(v.ok).toBe(false);
    expect(v.slopePerMin).toBeCloseTo(3, 6);
  });
});

const METRICS = `# HELP gatehouse_access_log_enqueued_total Access-log records handed to a sink
# TYPE gatehouse_access_log_enqueued_total counter
gatehouse_access_log_enqueued_total{sink="elasticsearch"} 1000
gatehouse_access_log_shipped_total{sink="elasticsearch"} 900
gatehouse_access_log_dropped_total{sink="elasticsearch",reason="buffer_full"} 30
gatehouse_access_log_dropped_total{sink="elasticsearch",reason="rejected"} 20
gatehouse_access_log_dropped_total{sink="elasticsearch",reason="shutdown"} 0
gatehouse_access_log_buffered{sink="elasticsearch"} 50
gatehouse_requests_total{route="data",service="app",method="GET",status="200"} 990
gatehouse_requests_total{route="",service="",method="GET",status="404"} 10
http_server_request_duration_seconds_bucket{le="0.005",http_route="data"} 5
`;

describe('metrics', () => {
  const samples = parsePrometheus(METRICS);

  it('reads the access-log accounting per sink, the drop reasons summed', () => {
    expect(accessLogAccounting(samples)).toEqual({
      elasticsearch: { enqueued: 1000, shipped: 900, dropped: 50, buffered: 50 },
    });
  });

  it('sums gatehouse_requests_total over every label set', () => {
    expect(gatewayRequests(samples)).toEqual({ total: 1000, byStatus: { '200': 990, '404': 10 } });
  });
});

describe('accountingChecks', () => {
  const accessLog = { elasticsearch: { enqueued: 1000, shipped: 900, dropped: 50, buffered: 50 } };
  const good = {
    client: { sent: 1003, received: 1000, errors: 3, inflight: 0 },
    accessLog,
    sink: 'elasticsearch',
    sinkReceived: 900,
    gatewayRequests: 1000,
  };

  it('passes when every count adds up', () => {
    const checks = accountingChecks(good);
    expect(checks.map((c) => c.ok)).toEqual([true, true, true, true, true]);
  });

  it('names each broken invariant with both sides', () => {
    const checks = accountingChecks({
      ...good,
      client: { sent: 1004, received: 1000, errors: 3, inflight: 1 },
      accessLog: { elasticsearch: { ...accessLog.elasticsearch, enqueued: 1001 } },
      sinkReceived: 899,
      gatewayRequests: 999,
    });
    expect(checks.filter((c) => !c.ok).map((c) => c.detail)).toEqual([
      'sent 1004 ≠ received + errors 1003 (diff 1)',
      'in flight 1 ≠ expected 0 (diff 1)',
      'enqueued 1001 ≠ shipped + dropped + buffered 1000 (diff 1)',
      'received 899 ≠ shipped 900 (diff -1)',
      'gateway 999 ≠ client 1000 (diff -1)',
    ]);
  });

  it('fails when the sink is not in /metrics, and skips what is null', () => {
    const checks = accountingChecks({ ...good, sink: 'otlp', gatewayRequests: null });
    expect(checks.map((c) => [c.name, c.ok])).toEqual([
      ['client: sent = received + connection errors', true],
      ['client: nothing in flight at the end', true],
      ['access log (elasticsearch): enqueued = shipped + dropped + buffered', true],
      ['access log (otlp) exported', false],
    ]);
  });
});
