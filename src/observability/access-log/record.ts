/**
 * The access-log record: one per request, filled by the gateway when the response ends, and the
 * Elasticsearch mapping for it. The record holds no query string, header or body: those may carry
 * credentials, and a log is read by more people than the gateway's config.
 */

export type RateLimitResult =
  | 'allowed'
  | 'rate_limited'
  | 'quota_exceeded'
  | 'fail_open'
  | 'fail_closed'
  // a route's shadow limit would have refused the request
  | 'would_reject';

export type AccessRecord = {
  /** ISO 8601 time of the request's start */
  time: string;
  requestId: string;
  traceId: string | null;
  /** route name; null when no route matched */
  route: string | null;
  method: string;
  /** the normalised path, without the query string (queries may hold secrets) */
  path: string;
  status: number;
  durationMs: number;
  clientIp: string;
  /** target origin of the last upstream attempt */
  upstream: string | null;
  upstreamDurationMs: number | null;
  /** why the last upstream attempt failed without an answer (e.g. "tls: ..."); null otherwise */
  upstreamError: string | null;
  /** upstream attempts (0 = never proxied) */
  attempts: number;
  consumerId: string | null;
  tier: string | null;
  bytesIn: number;
  bytesOut: number;
  rateLimit: RateLimitResult | null;
  /** the problem code when the gateway answered with an error */
  error: string | null;
};

/** the second `isoTime` last formatted (epoch ms, a multiple of 1000) and its text up to the `.` */
let isoSecond = Number.NaN;
let isoPrefix = '';

/**
 * `new Date(ms).toISOString()`, with the date and time of day formatted once per second: every
 * request writes a record, and requests of one second share all but the milliseconds.
 */
export function isoTime(epochMs: number): string {
  const ms = Math.floor(epochMs);
  const rest = ms % 1000;
  const second = ms - rest;
  if (second !== isoSecond || rest < 0) {
    const iso = new Date(ms).toISOString();
    // years 0000-9999 only (`YYYY-MM-DDTHH:mm:ss.sssZ`); others are formatted whole every time
    if (iso.length !== 24 || rest < 0) return iso;
    isoSecond = second;
    isoPrefix = iso.slice(0, 20);
  }
  return `${isoPrefix}${rest < 10 ? '00' : rest < 100 ? '0' : ''}${rest}Z`;
}

const keyword = { type: 'keyword', ignore_above: 1024 } as const;

/**
 * Field mappings of the Elasticsearch documents: the record plus `@timestamp` (a copy of `time`),
 * which data streams require. `docs/access-logs.md` shows the same template; a test keeps the
 * two equal.
 */
export const ACCESS_RECORD_MAPPINGS = {
  // unknown fields stay in _source without being indexed, so a newer gateway adding a field does
  // not get its documents rejected by an older template
  dynamic: false,
  properties: {
    '@timestamp': { type: 'date' },
    time: { type: 'date' },
    requestId: keyword,
    traceId: keyword,
    route: keyword,
    method: keyword,
    path: { type: 'keyword', ignore_above: 4096 },
    status: { type: 'short' },
    durationMs: { type: 'float' },
    // an address the gateway could not read must not cost the whole document
    clientIp: { type: 'ip', ignore_malformed: true },
    upstream: keyword,
    upstreamDurationMs: { type: 'float' },
    upstreamError: keyword,
    attempts: { type: 'short' },
    consumerId: keyword,
    tier: keyword,
    bytesIn: { type: 'long' },
    bytesOut: { type: 'long' },
    rateLimit: keyword,
    error: keyword,
  },
} as const;

/** The composable index template (`PUT _index_template/<name>`) for `<index>` as a data stream. */
export function indexTemplate(index: string): Record<string, unknown> {
  return {
    index_patterns: [`${index}*`],
    data_stream: {},
    priority: 200,
    template: { mappings: ACCESS_RECORD_MAPPINGS },
  };
}
