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
