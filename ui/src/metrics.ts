/**
 * The overview's numbers, computed in the browser from two scrapes of the gateway's own
 * Prometheus text (`GET /metrics`): requests/s, the error ratio (5xx of all answers), rate-limit
 * rejections/s, and p50/p99 latency from the request-duration histogram's buckets. Pure: no DOM.
 */

/** The counters of one scrape that the overview reads, summed over their labels. */
export type Scrape = {
  readonly at: number;
  readonly requests: number;
  readonly errors: number;
  readonly rejected: number;
  /** upper bound (seconds; Infinity for +Inf) → cumulative count, summed over every series */
  readonly buckets: ReadonlyMap<number, number>;
};

export type Rates = {
  readonly rps: number;
  readonly errorRatio: number;
  readonly rejectedPerSec: number;
  /** seconds; null when no request ended between the scrapes */
  readonly p50: number | null;
  readonly p99: number | null;
};

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

function labelsOf(text: string | undefined): Map<string, string> {
  const m = new Map<string, string>();
  if (text === undefined) return m;
  for (const [, k, v] of text.matchAll(LABEL)) m.set(k as string, v as string);
  return m;
}

/** Results of a rate-limit decision that refused the request. */
const REFUSED = new Set(['rate_limited', 'quota_exceeded', 'fail_closed']);

export function parseScrape(text: string, at: number): Scrape {
  let requests = 0;
  let errors = 0;
  let rejected = 0;
  const buckets = new Map<number, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (m === null) continue;
    const name = m[1] as string;
    const value = Number(m[3]);
    if (!Number.isFinite(value)) continue;
    if (name === 'gatehouse_requests_total') {
      requests += value;
      if (Number(labelsOf(m[2]).get('status')) >= 500) errors += value;
    } else if (name === 'gatehouse_ratelimit_decisions_total') {
      if (REFUSED.has(labelsOf(m[2]).get('result') ?? '')) rejected += value;
    } else if (name === 'http_server_request_duration_seconds_bucket') {
      const le = labelsOf(m[2]).get('le');
      if (le === undefined) continue;
      const bound = le === '+Inf' ? Infinity : Number(le);
      buckets.set(bound, (buckets.get(bound) ?? 0) + value);
    }
  }
  return { at, requests, errors, rejected, buckets };
}

/** The q-quantile of the requests that ended between two scrapes, interpolated in its bucket. */
export function quantile(prev: Scrape, next: Scrape, q: number): number | null {
  const bounds = [...next.buckets.keys()].sort((a, b) => a - b);
  const counts = bounds.map((b) => Math.max(0, (next.buckets.get(b) ?? 0) - (prev.buckets.get(b) ?? 0)));
  const total = counts[counts.length - 1] ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (let i = 0; i < bounds.length; i++) {
    const upper = bounds[i] as number;
    const c = counts[i] as number;
    if (c >= rank) {
      // the +Inf bucket has no upper bound: the best said is "above the last finite one"
      if (upper === Infinity) return lower;
      const inBucket = c - below;
      return inBucket <= 0 ? upper : lower + ((upper - lower) * (rank - below)) / inBucket;
    }
    lower = upper;
    below = c;
  }
  return lower;
}

export function rates(prev: Scrape, next: Scrape): Rates {
  const dt = (next.at - prev.at) / 1000;
  // a counter that went down: the gateway restarted (or a worker did): start over from this scrape
  const d = (a: number, b: number) => Math.max(0, b - a);
  const requests = d(prev.requests, next.requests);
  const errors = d(prev.errors, next.errors);
  return {
    rps: dt > 0 ? requests / dt : 0,
    errorRatio: requests > 0 ? errors / requests : 0,
    rejectedPerSec: dt > 0 ? d(prev.rejected, next.rejected) / dt : 0,
    p50: quantile(prev, next, 0.5),
    p99: quantile(prev, next, 0.99),
  };
}
