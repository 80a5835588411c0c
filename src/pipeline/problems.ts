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

/** The `application/problem+json` body; `instance` is the request id. */
export function problemBody(p: Problem, requestId: string): string {
  return JSON.stringify({
    type: `https://gatehouse.dev/problems/${p.code}`,
    title: p.title,
    status: p.status,
    detail: p.detail,
    instance: requestId,
    code: p.code,
  });
}
