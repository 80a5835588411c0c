/** The console's overview numbers, computed from two Prometheus scrapes (ui/src/metrics.ts). */
import { describe, expect, it } from 'vitest';
import { parseScrape, quantile, rates } from '../../ui/src/metrics.js';

const scrape = (o: { ok: number; err: number; limited: number; buckets: [string, number][] }) =>
  [
    '# HELP gatehouse_requests_total Requests',
    '# TYPE gatehouse_requests_total counter',
    `gatehouse_requests_total{route="a",service="api",method="GET",status="200"} ${o.ok}`,
    `gatehouse_requests_total{route="a",service="api",method="GET",status="502"} ${o.err}`,
    `gatehouse_requests_total{route="a",service="api",method="GET",status="429"} ${o.limited}`,
    `gatehouse_ratelimit_decisions_total{tier="free",result="allowed"} ${o.ok}`,
    `gatehouse_ratelimit_decisions_total{tier="free",result="rate_limited"} ${o.limited}`,
    `gatehouse_ratelimit_decisions_total{tier="free",result="would_reject"} 1000`,
    ...o.buckets.map(
      ([le, n]) =>
        `http_server_request_duration_seconds_bucket{http_route="a",http_request_method="GET",http_response_status_code="200",le="${le}"} ${n}`,
    ),
    `http_server_request_duration_seconds_count{http_route="a"} ${o.buckets.at(-1)?.[1] ?? 0}`,
    // a label value with a quote, a brace and a comma must not confuse the reader
    'gatehouse_requests_total{route="we\\"ird,{x}",service="",method="GET",status="500"} 0',
    '',
  ].join('\n');

describe('console metrics', () => {
  const before = parseScrape(
    scrape({
      ok: 100,
      err: 0,
      limited: 0,
      buckets: [
        ['0.005', 50],
        ['0.01', 90],
        ['0.1', 100],
        ['+Inf', 100],
      ],
    }),
    10_000,
  );
  const after = parseScrape(
    scrape({
      ok: 280,
      err: 10,
      limited: 10,
      buckets: [
        ['0.005', 150],
        ['0.01', 270],
        ['0.1', 298],
        ['+Inf', 300],
      ],
    }),
    12_000,
  );

  it('sums the counters over their labels', () => {
    expect(after.requests).toBe(300);
    expect(after.errors).toBe(10);
    // would_reject (a shadow limit) let the request through: not a rejection
    expect(after.rejected).toBe(10);
    expect(after.buckets.get(Infinity)).toBe(300);
  });

  it('computes rates and the error ratio between two scrapes', () => {
    const r = rates(before, after);
    expect(r.rps).toBe(100);
    expect(r.errorRatio).toBe(0.05);
    expect(r.rejectedPerSec).toBe(5);
  });

  it('interpolates quantiles inside the bucket that holds them', () => {
    // 200 requests ended: 100 ≤ 5 ms, 80 in (5, 10] ms, 18 in (10, 100] ms, 2 above
    expect(quantile(before, after, 0.5)).toBe(0.005);
    expect(quantile(before, after, 0.75)).toBeCloseTo(0.005 + 0.005 * (50 / 80), 9);
    // the 99th percentile is beyond the last finite bound: reported as that bound
    expect(quantile(before, after, 0.995)).toBe(0.1);
  });

  it('reports no latency when nothing ended, and no negative rate after a restart', () => {
    expect(quantile(after, after, 0.5)).toBeNull();
    const restarted = parseScrape(scrape({ ok: 5, err: 0, limited: 0, buckets: [['+Inf', 5]] }), 14_000);
    const r = rates(after, restarted);
    expect(r.rps).toBe(0);
    expect(r.rejectedPerSec).toBe(0);
  });

  it('ignores malformed lines', () => {
    const s = parseScrape('garbage\ngatehouse_requests_total{status="200"} NaN\n{}} 4\n', 0);
    expect(s.requests).toBe(0);
  });
});
