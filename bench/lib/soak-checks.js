// Pure checks of the soak and memory benchmarks: the least-squares slope and the "flat" verdict of
// a sampled series (RSS, open sockets), the accounting read from the gateway's /metrics, and the
// invariants between the client's, the gateway's and the sink's counts. No I/O here, so the unit
// tests cover every branch (test/unit/bench-soak-checks.test.ts).

/** @typedef {{ t: number, v: number }} Point  t in seconds from the start, v in the series' unit */
/** @typedef {{ name: string, labels: Record<string, string>, value: number }} Sample */

/**
 * Least-squares slope of v over t, per second; 0 for fewer than two distinct times.
 * @param {Point[]} points
 */
export function slopePerSecond(points) {
  const n = points.length;
  if (n < 2) return 0;
  let st = 0;
  let sv = 0;
  for (const p of points) {
    st += p.t;
    sv += p.v;
  }
  const mt = st / n;
  const mv = sv / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.t - mt) * (p.v - mv);
    den += (p.t - mt) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/**
 * Median of a non-empty list (the mean of the middle two for an even count); NaN when empty.
 * @param {number[]} values
 */
export function median(values) {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2
    ? /** @type {number} */ (s[mid])
    : /** @type {number} */ (s[mid - 1] + /** @type {number} */ (s[mid])) / 2;
}

/**
 * @typedef {object} FlatRule
 * @property {number} maxSlopePerMin  the least-squares slope over the second half must stay at or below it
 * @property {number} [tolerance]  the last quarter's maximum may exceed the third quarter's maximum
 *   by this share of it (0.1 = 10 %)…
 * @property {number} [slack]  …or by this many units, whichever is larger (small integer series:
 *   a socket count of 40 moves by a few sockets without leaking)
 */

/**
 * @typedef {object} FlatVerdict
 * @property {boolean} ok
 * @property {number} samples  points in the second half
 * @property {number} slopePerMin
 * @property {number} median  of the second half
 * @property {number} thirdQuarterMax
 * @property {number} lastQuarterMax
 * @property {number} limit  the highest last-quarter maximum allowed
 * @property {number} first  first value of the whole series
 * @property {number} last
 * @property {number} max  of the whole series
 * @property {string[]} reasons  why not flat (empty when ok)
 */

/**
 * Is the series flat in its second half? Flat means both
 * (1) the least-squares slope over the second half (t ≥ the middle of the sampled span) is at most
 *     `maxSlopePerMin`: a steady leak, however small against the noise, tilts the line; and
 * (2) the peak does not rise: the maximum of the last quarter is at most the maximum of the third
 *     quarter plus max(tolerance × it, slack): a late jump, which the slope averages away.
 * Peaks, not medians, are compared in (2) because a garbage-collected heap is a sawtooth (RSS
 * climbs while the old generation fills, drops when a major GC compacts it): a median moves with
 * the phase of the saw, its peaks stay level unless something is retained.
 * Fewer than 4 points in the second half cannot show anything: not ok.
 * @param {Point[]} points  in time order
 * @param {FlatRule} rule
 * @returns {FlatVerdict}
 */
export function flatness(points, { maxSlopePerMin, tolerance = 0.1, slack = 0 }) {
  const t0 = points[0]?.t ?? 0;
  const t1 = points[points.length - 1]?.t ?? 0;
  const span = t1 - t0;
  const half = points.filter((p) => p.t >= t0 + span / 2);
  const third = half.filter((p) => p.t < t0 + (span * 3) / 4);
  const quarter = half.filter((p) => p.t >= t0 + (span * 3) / 4);
  const slopePerMin = slopePerSecond(half) * 60;
  const med = median(half.map((p) => p.v));
  const maxOf = (/** @type {Point[]} */ ps) =>
    ps.reduce((m, p) => Math.max(m, p.v), Number.NEGATIVE_INFINITY);
  const thirdQuarterMax = maxOf(third);
  const lastQuarterMax = maxOf(quarter);
  const limit = thirdQuarterMax + Math.max(tolerance * thirdQuarterMax, slack);
  /** @type {string[]} */
  const reasons = [];
  if (half.length < 4) reasons.push(`only ${half.length} samples in the second half (need 4)`);
  if (slopePerMin > maxSlopePerMin)
    reasons.push(`slope ${round(slopePerMin)}/min > ${round(maxSlopePerMin)}/min`);
  if (lastQuarterMax > limit)
    reasons.push(
      `last-quarter max ${round(lastQuarterMax)} > ${round(limit)} (third-quarter max ${round(thirdQuarterMax)})`,
    );
  return {
    ok: reasons.length === 0,
    samples: half.length,
    slopePerMin,
    median: med,
    thirdQuarterMax,
    lastQuarterMax,
    limit,
    first: points[0]?.v ?? Number.NaN,
    last: points[points.length - 1]?.v ?? Number.NaN,
    max: maxOf(points),
    reasons,
  };
}

/**
 * The floor of the series: the minimum of each `windowS`-second window (from the first point),
 * placed at the window's middle. Memory a process retains raises its floor, the lowest RSS
 * after collections; the peaks between collections follow the allocation rate instead (V8 grows
 * the young generation when the load rises), which a shared machine changes at will. Open
 * sockets likewise: churn (connections a timeout closed and a pool reopened) moves the samples,
 * a socket never closed raises the floor.
 * @param {Point[]} points  in time order
 * @param {number} windowS
 * @returns {Point[]}
 */
export function floors(points, windowS) {
  const t0 = points[0]?.t ?? 0;
  /** @type {Map<number, number>} */
  const min = new Map();
  for (const p of points) {
    const w = Math.floor((p.t - t0) / windowS);
    const m = min.get(w);
    if (m === undefined || p.v < m) min.set(w, p.v);
  }
  return [...min].sort(([a], [b]) => a - b).map(([w, v]) => ({ t: t0 + (w + 0.5) * windowS, v }));
}

/** @param {number} n */
function round(n) {
  return Math.round(n * 100) / 100;
}

/**
 * The access-log accounting of every sink, as /metrics exports it (see
 * src/observability/access-log/metrics.ts): one scrape reads all four at one moment.
 * @param {Sample[]} samples
 * @returns {Record<string, { enqueued: number, shipped: number, dropped: number, buffered: number }>}
 */
export function accessLogAccounting(samples) {
  /** @type {Record<string, { enqueued: number, shipped: number, dropped: number, buffered: number }>} */
  const bySink = {};
  /** @type {Record<string, 'enqueued' | 'shipped' | 'dropped' | 'buffered'>} */
  const field = {
    gatehouse_access_log_enqueued_total: 'enqueued',
    gatehouse_access_log_shipped_total: 'shipped',
    gatehouse_access_log_dropped_total: 'dropped',
    gatehouse_access_log_buffered: 'buffered',
  };
  for (const s of samples) {
    const key = field[s.name];
    if (key === undefined) continue;
    const sink = s.labels.sink ?? '';
    bySink[sink] ??= { enqueued: 0, shipped: 0, dropped: 0, buffered: 0 };
    bySink[sink][key] += s.value;
  }
  return bySink;
}

/**
 * Sum of gatehouse_requests_total over every label set, and its split by status.
 * @param {Sample[]} samples
 */
export function gatewayRequests(samples) {
  let total = 0;
  /** @type {Record<string, number>} */
  const byStatus = {};
  for (const s of samples) {
    if (s.name !== 'gatehouse_requests_total') continue;
    total += s.value;
    const status = s.labels.status ?? '';
    byStatus[status] = (byStatus[status] ?? 0) + s.value;
  }
  return { total, byStatus };
}

/** @typedef {{ name: string, ok: boolean, detail: string }} Check */

/**
 * A check that two counts are equal, with both in the detail.
 * @param {string} name
 * @param {string} leftName
 * @param {number} left
 * @param {string} rightName
 * @param {number} right
 * @returns {Check}
 */
export function equalCheck(name, leftName, left, rightName, right) {
  const ok = left === right;
  return {
    name,
    ok,
    detail: `${leftName} ${left} ${ok ? '=' : '≠'} ${rightName} ${right}${ok ? '' : ` (diff ${left - right})`}`,
  };
}

/**
 * The accounting invariants of one run.
 * @param {object} input
 * @param {{ sent: number, received: number, errors: number, inflight: number }} input.client
 * @param {Record<string, { enqueued: number, shipped: number, dropped: number, buffered: number }>} input.accessLog
 * @param {string} input.sink  the access-log sink the fake collector stands for
 * @param {number | null} input.sinkReceived  documents the fake collector counted; null: no sink
 * @param {number | null} input.gatewayRequests  sum of gatehouse_requests_total; null: not checked
 * @returns {Check[]}
 */
export function accountingChecks({ client, accessLog, sink, sinkReceived, gatewayRequests }) {
  /** @type {Check[]} */
  const checks = [
    equalCheck(
      'client: sent = received + connection errors',
      'sent',
      client.sent,
      'received + errors',
      client.received + client.errors,
    ),
    equalCheck('client: nothing in flight at the end', 'in flight', client.inflight, 'expected', 0),
  ];
  for (const [name, a] of Object.entries(accessLog)) {
    checks.push(
      equalCheck(
        `access log (${name}): enqueued = shipped + dropped + buffered`,
        'enqueued',
        a.enqueued,
        'shipped + dropped + buffered',
        a.shipped + a.dropped + a.buffered,
      ),
    );
  }
  if (sinkReceived !== null) {
    const a = accessLog[sink];
    if (a === undefined)
      checks.push({ name: `access log (${sink}) exported`, ok: false, detail: 'no such sink in /metrics' });
    else
      checks.push(
        equalCheck(`sink received = shipped (${sink})`, 'received', sinkReceived, 'shipped', a.shipped),
      );
  }
  if (gatewayRequests !== null) {
    checks.push(
      equalCheck(
        'gateway: gatehouse_requests_total = responses the client received',
        'gateway',
        gatewayRequests,
        'client',
        client.received,
      ),
    );
  }
  return checks;
}

export { parsePrometheus } from './fake-sinks.js';
