/**
 * Errors the gateway itself answers with: one registry, stable codes, RFC 9457 bodies.
 * Stages return these as values; only the server turns them into responses.
 */
export type ProblemCode =
  | 'bad_request'
  | 'not_found'
  | 'no_route'
  | 'body_too_large'
  | 'url_too_long'
  | 'headers_too_large'
  | 'request_timeout'
  | 'http_version_not_supported'
  | 'upstream_error'
  | 'upstream_timeout'
  | 'circuit_open'
  | 'no_healthy_target'
  | 'unauthorized_admin'
  | 'shutting_down'
  | 'reload_failed'
  | 'internal_error';

export type Problem = {
  readonly status: number;
  readonly code: ProblemCode | (string & {});
  readonly title: string;
  readonly detail: string;
  /** extra response headers, e.g. Retry-After, WWW-Authenticate */
  readonly headers?: readonly string[];
};

const TITLES: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  408: 'Request Timeout',
  413: 'Content Too Large',
  414: 'URI Too Long',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

export function problem(
  status: number,
  code: Problem['code'],
  detail: string,
  headers?: readonly string[],
): Problem {
  const p = { status, code, title: TITLES[status] ?? 'Error', detail };
  return headers ? { ...p, headers } : p;
}

export const problems = {
  badRequest: (detail: string) => problem(400, 'bad_request', detail),
  httpVersionNotSupported: (major: number, minor: number) =>
    problem(
      505,
      'http_version_not_supported',
      `HTTP/${major}.${minor} is not spoken on this port (HTTP/1.0 and 1.1 are)`,
    ),
  noRoute: () => problem(404, 'no_route', 'no route matches this request'),
  bodyTooLarge: (limit: number) => problem(413, 'body_too_large', `request body exceeds ${limit} bytes`),
  urlTooLong: (limit: number) => problem(414, 'url_too_long', `request target exceeds ${limit} bytes`),
  upstreamError: (detail: string) => problem(502, 'upstream_error', detail),
  upstreamTimeout: (detail: string) => problem(504, 'upstream_timeout', detail),
  circuitOpen: (service: string, retryAfterMs: number) =>
    problem(
      503,
      'circuit_open',
      `service "${service}" is failing; its circuit breaker is open and requests fail fast`,
      ['retry-after', String(Math.max(1, Math.ceil(retryAfterMs / 1000)))],
    ),
  noHealthyTarget: (service: string) =>
    problem(503, 'no_healthy_target', `service "${service}" has no target to send the request to`, [
      'retry-after',
      '1',
    ]),
  shuttingDown: () =>
    problem(503, 'shutting_down', 'the gateway is shutting down; retry on another instance', [
      'retry-after',
      '1',
    ]),
  internal: () => problem(500, 'internal_error', 'the gateway failed to handle this request'),
} as const;

const UUID = /^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$/;

/**
 * A client-sent request id that is not a UUID, as a URI: a tag URI (RFC 4151), which mints an
 * identifier under a name the project holds without registering a URN namespace. A request id
 * is 1-128 of `A-Z a-z 0-9 . _ : -`, all valid there unescaped. The bare id is no URI reference:
 * `a:b` would read as scheme `a`, and `err-1` as a path relative to the request's URL.
 */
export const REQUEST_TAG = 'tag:gatehouse.dev,2026:request:';

/**
 * The problem's `instance` (RFC 9457 §3.1.5: a URI reference): `urn:uuid:<id>` (RFC 9562) when
 * the request id is a UUID (every id the gateway generates), else the tag URI above. Either way
 * the id follows the prefix exactly as `X-Request-Id` carries it.
 */
export function problemInstance(requestId: string): string {
  return UUID.test(requestId) ? `urn:uuid:${requestId}` : REQUEST_TAG + requestId;
}

/** The `application/problem+json` body; `instance` names the request id as a URI. */
export function problemBody(p: Problem, requestId: string): string {
  return JSON.stringify({
    type: `https://gatehouse.dev/problems/${p.code}`,
    title: p.title,
    status: p.status,
    detail: p.detail,
    instance: problemInstance(requestId),
    code: p.code,
  });
}
