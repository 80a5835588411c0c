/**
 * Every error the gateway answers itself, each defined once: its stable `code`, HTTP status,
 * title and when it happens. The set is closed: `ProblemCode` is derived from this table, so a
 * code that is not here does not compile. `docs/errors.md` documents each entry (a unit test
 * keeps the two in step), and each problem's `type` URI names its section there.
 *
 * A leaf module: it imports nothing of the project, so every layer may use it.
 */

/** Which port answers with the code: the data plane (proxy port), the admin API, or both. */
export type ProblemPort = 'proxy' | 'admin' | 'both';

export type ProblemDefinition = {
  readonly status: number;
  /** RFC 9110's reason phrase for the status: the data plane sends it in the status line too */
  readonly title: string;
  readonly port: ProblemPort;
  /** one line: what makes the gateway answer with it */
  readonly when: string;
};

export const PROBLEM_REGISTRY = {
  bad_request: {
    status: 400,
    title: 'Bad Request',
    port: 'both',
    when: 'the request is malformed: framing, Host, request target, an Upgrade-less upgrade, or an admin request body',
  },
  invalid_config: {
    status: 400,
    title: 'Bad Request',
    port: 'admin',
    when: '`POST /reload` read a config file that is invalid; `errors` lists every problem',
  },
  unauthenticated: {
    status: 401,
    title: 'Unauthorized',
    port: 'proxy',
    when: 'the route requires authentication and no method found a valid credential',
  },
  unauthorized_admin: {
    status: 401,
    title: 'Unauthorized',
    port: 'admin',
    when: 'an admin endpoint other than the probes and `/metrics` was called without the admin token',
  },
  read_only_token: {
    status: 403,
    title: 'Forbidden',
    port: 'admin',
    when: 'a read-only admin token (`admin.readToken`, or a `read` token of `admin.tokens`) called an admin endpoint that changes state',
  },
  // token revocation (auth/jwt/revocation.ts)
  token_revoked: {
    status: 401,
    title: 'Unauthorized',
    port: 'proxy',
    when: 'the bearer token was revoked (by its `jti`, or every token of its subject) through the admin API',
  },
  forbidden: {
    status: 403,
    title: 'Forbidden',
    port: 'proxy',
    when: "the credential is valid but the consumer's roles lack a permission the route requires",
  },
  ip_denied: {
    status: 403,
    title: 'Forbidden',
    port: 'proxy',
    when: 'the client address is refused by an IP deny list, or not in a non-empty allow list (`ip`)',
  },
  no_route: {
    status: 404,
    title: 'Not Found',
    port: 'proxy',
    when: 'no route matches the request (host, method, path)',
  },
  not_found: {
    status: 404,
    title: 'Not Found',
    port: 'admin',
    when: 'no such admin endpoint, or no API key with that id',
  },
  method_not_allowed: {
    status: 405,
    title: 'Method Not Allowed',
    port: 'admin',
    when: 'the admin endpoint exists but not for this method',
  },
  request_timeout: {
    status: 408,
    title: 'Request Timeout',
    port: 'proxy',
    when: 'the request headers or the whole request did not arrive within `limits.headersTimeout` or `limits.requestTimeout`',
  },
  reload_unavailable: {
    status: 409,
    title: 'Conflict',
    port: 'admin',
    when: '`POST /reload` on a gateway that was not started from a config file',
  },
  // token revocation (auth/jwt/revocation.ts)
  token_revocation_unavailable: {
    status: 409,
    title: 'Conflict',
    port: 'admin',
    when: 'a token revocation endpoint was called but `auth.jwt.revocation` is not configured',
  },
  api_keys_unavailable: {
    status: 409,
    title: 'Conflict',
    port: 'admin',
    when: 'a `/keys` endpoint was called but `auth.apiKey` is not configured',
  },
  key_expired: {
    status: 409,
    title: 'Conflict',
    port: 'admin',
    when: 'a rotation was asked for a key that has expired',
  },
  key_rotated: {
    status: 409,
    title: 'Conflict',
    port: 'admin',
    when: 'a rotation was asked for a key that was already rotated',
  },
  key_revoked: {
    status: 409,
    title: 'Conflict',
    port: 'admin',
    when: 'a rotation was asked for a key that is revoked',
  },
  body_too_large: {
    status: 413,
    title: 'Content Too Large',
    port: 'proxy',
    when: 'the request body exceeds `limits.bodySize` (declared or counted), or its chunk extensions are too long',
  },
  url_too_long: {
    status: 414,
    title: 'URI Too Long',
    port: 'proxy',
    when: 'the request target exceeds `limits.maxUrlLength`',
  },
  rate_limited: {
    status: 429,
    title: 'Too Many Requests',
    port: 'proxy',
    when: "a rate limit of the caller's tier is reached, or its address failed authentication too often",
  },
  quota_exceeded: {
    status: 429,
    title: 'Too Many Requests',
    port: 'proxy',
    when: "the quota of the caller's tier is used up for the current period",
  },
  headers_too_large: {
    status: 431,
    title: 'Request Header Fields Too Large',
    port: 'proxy',
    when: 'the request headers exceed `limits.maxHeaderSize`',
  },
  internal_error: {
    status: 500,
    title: 'Internal Server Error',
    port: 'both',
    when: 'a handler threw or its promise rejected (a stage, the proxy, an admin endpoint): a bug',
  },
  reload_failed: {
    status: 500,
    title: 'Internal Server Error',
    port: 'admin',
    when: '`POST /reload` read a valid config file that could not be put to work',
  },
  upstream_error: {
    status: 502,
    title: 'Bad Gateway',
    port: 'proxy',
    when: 'the upstream refused or reset the connection, or answered something that is not valid HTTP',
  },
  store_unavailable: {
    status: 503,
    title: 'Service Unavailable',
    port: 'both',
    when: 'a store the request needs (rate-limit store, key store, JWKS endpoint) is down and cannot decide',
  },
  circuit_open: {
    status: 503,
    title: 'Service Unavailable',
    port: 'proxy',
    when: "the service's circuit breaker is open: requests fail fast until it probes again",
  },
  no_healthy_target: {
    status: 503,
    title: 'Service Unavailable',
    port: 'proxy',
    when: 'the service has no target at all (discovery found none yet)',
  },
  shutting_down: {
    status: 503,
    title: 'Service Unavailable',
    port: 'proxy',
    when: 'an upgrade (WebSocket) was asked for while the gateway drains',
  },
  upstream_timeout: {
    status: 504,
    title: 'Gateway Timeout',
    port: 'proxy',
    when: 'the upstream did not accept a connection, free a pooled one, or send its response headers in time',
  },
  http_version_not_supported: {
    status: 505,
    title: 'HTTP Version Not Supported',
    port: 'proxy',
    when: 'the request line names a version other than HTTP/1.0 and HTTP/1.1 (`HTTP/0.9`, `HTTP/2.0`)',
  },
} as const satisfies Readonly<Record<string, ProblemDefinition>>;

/** A problem code: one of the registry's keys, nothing else. */
export type ProblemCode = keyof typeof PROBLEM_REGISTRY;

export const PROBLEM_CODES = Object.keys(PROBLEM_REGISTRY) as readonly ProblemCode[];

/**
 * The `type` URIs' common prefix: `<base><code>` is the problem type, documented under the
 * `<code>` heading of `docs/errors.md`.
 */
export const PROBLEM_TYPE_BASE = 'https://gatehouse.dev/problems/';

export function problemType(code: ProblemCode): string {
  return PROBLEM_TYPE_BASE + code;
}

/** An error answer as a value: stages and the proxy hand these back; only the server writes them. */
export type Problem = {
  readonly status: number;
  readonly code: ProblemCode;
  readonly title: string;
  /** this occurrence, for a person; never a credential */
  readonly detail: string;
  /** extra response headers as name/value pairs, e.g. Retry-After, WWW-Authenticate */
  readonly headers?: readonly string[];
  /** an extension member (RFC 9457 §3.2): the admin API's list of config problems */
  readonly errors?: readonly string[];
};

/** The problem `code` names, with this occurrence's detail and headers. */
export function problem(code: ProblemCode, detail: string, headers?: readonly string[]): Problem {
  const d: ProblemDefinition = PROBLEM_REGISTRY[code];
  return headers
    ? { status: d.status, code, title: d.title, detail, headers }
    : { status: d.status, code, title: d.title, detail };
}

/** Retry-After in whole seconds, at least 1. */
function retryAfter(ms: number): string {
  return String(Math.max(1, Math.ceil(ms / 1000)));
}

/** The problems whose detail the gateway words the same wherever they arise. */
export const problems = {
  badRequest: (detail: string) => problem('bad_request', detail),
  httpVersionNotSupported: (major: number, minor: number) =>
    problem(
      'http_version_not_supported',
      `HTTP/${major}.${minor} is not spoken on this port (HTTP/1.0 and 1.1 are)`,
    ),
  noRoute: () => problem('no_route', 'no route matches this request'),
  bodyTooLarge: (limit: number) => problem('body_too_large', `request body exceeds ${limit} bytes`),
  urlTooLong: (limit: number) => problem('url_too_long', `request target exceeds ${limit} bytes`),
  upstreamError: (detail: string) => problem('upstream_error', detail),
  upstreamTimeout: (detail: string) => problem('upstream_timeout', detail),
  circuitOpen: (service: string, retryAfterMs: number) =>
    problem(
      'circuit_open',
      `service "${service}" is failing; its circuit breaker is open and requests fail fast`,
      ['retry-after', retryAfter(retryAfterMs)],
    ),
  noHealthyTarget: (service: string) =>
    problem('no_healthy_target', `service "${service}" has no target to send the request to`, [
      'retry-after',
      '1',
    ]),
  shuttingDown: () =>
    problem('shutting_down', 'the gateway is shutting down; retry on another instance', ['retry-after', '1']),
  internal: () => problem('internal_error', 'the gateway failed to handle this request'),
} as const;
