/**
 * The config file's schema. The TypeScript types of the config are derived from it
 * (`GatewayConfig` is what the loader returns: defaults applied, durations and sizes in
 * milliseconds and bytes), and `gatehouse schema` prints it as JSON Schema.
 */
import { FormatRegistry, Type, type StaticDecode, type TLiteral, type TSchema } from '@sinclair/typebox';
import {
  DURATION_PATTERN,
  MAX_DURATION_MS,
  SIZE_PATTERN,
  isDuration,
  parseDuration,
  parseSize,
} from './units.js';

/*
 * `errorMessage` (on leaf schemas) is the whole message a validation error there reports (see
 * messages.ts); editors ignore the keyword. `propertyNames.errorMessage` does the same for a
 * record's keys.
 */

/** Checked beside DURATION_PATTERN: the pattern cannot bound the value (see units.ts). */
const DURATION_FORMAT = 'gatehouse-duration';
if (!FormatRegistry.Has(DURATION_FORMAT)) FormatRegistry.Set(DURATION_FORMAT, isDuration);

/** The same, with a lower bound (one format per bound, registered once). */
function durationFormat(minMs: number): string {
  if (minMs === 0) return DURATION_FORMAT;
  const name = `${DURATION_FORMAT}-min-${minMs}ms`;
  if (!FormatRegistry.Has(name)) FormatRegistry.Set(name, (v) => isDuration(v) && parseDuration(v) >= minMs);
  return name;
}

export type DurationOptions = {
  /** the shortest value allowed, written as in the file ("1ms", "100ms"); default 0 */
  readonly min?: string;
  /** why a shorter value is refused: ends the message of one that is */
  readonly why?: string;
  /** what 0 means, where 0 is allowed and means something other than "no time" */
  readonly zero?: string;
};

/**
 * A duration in the file ("10s" or milliseconds); a number of milliseconds once loaded. Every
 * duration has a minimum (`min`) or a documented meaning for 0 (`zero`): 0 ms is a busy loop
 * for an interval, and "no timeout at all" for most clients Gatehouse drives (node:http, undici).
 */
export const Duration = (defaultValue?: string, options: DurationOptions = {}) => {
  const minMs = options.min === undefined ? 0 : parseDuration(options.min);
  const bounds = minMs === 0 ? '' : ` (at least ${options.min})`;
  return Type.Transform(
    Type.Union(
      [
        Type.String({ pattern: DURATION_PATTERN, format: durationFormat(minMs) }),
        Type.Integer({ minimum: minMs, maximum: MAX_DURATION_MS }),
      ],
      {
        description:
          `a duration: "250ms", "10s", "5m", "1h", "1d", or a number of milliseconds${bounds}` +
          (options.zero === undefined ? '' : `; 0 = ${options.zero}`),
        errorMessage:
          minMs === 0
            ? 'must be a duration such as "250ms", "10s", "5m", "1h" or "1d" (at most 24 days), or a number of milliseconds'
            : `must be a duration from ${options.min} to 24 days, such as "250ms", "10s", "5m", "1h" or "1d", or a number of milliseconds`,
        ...(minMs === 0
          ? {}
          : {
              // messages.ts: a well-formed duration under the minimum is told so, and why
              minimumMs: minMs,
              minimumMessage: `must be at least ${options.min}`,
              ...(options.why === undefined ? {} : { minimumWhy: options.why }),
            }),
        ...(defaultValue === undefined ? {} : { default: defaultValue }),
      },
    ),
  )
    .Decode((v) => parseDuration(v))
    .Encode((ms) => ms);
};

/** A size in the file ("10mb" or bytes); a number of bytes once loaded. */
export const Size = (defaultValue?: string) =>
  Type.Transform(
    Type.Union([Type.String({ pattern: SIZE_PATTERN }), Type.Integer({ minimum: 0 })], {
      description: 'a size: "512b", "64kb", "10mb", "1gb", or a number of bytes',
      errorMessage: 'must be a size such as "512b", "64kb", "10mb" or "1gb", or a number of bytes',
      ...(defaultValue === undefined ? {} : { default: defaultValue }),
    }),
  )
    .Decode((v) => parseSize(v))
    .Encode((bytes) => bytes);

const Port = (defaultValue: number) =>
  Type.Integer({
    minimum: 0,
    maximum: 65535,
    default: defaultValue,
    description: 'TCP port (0 = any free port)',
    errorMessage: 'must be a port number from 0 to 65535 (0 = any free port)',
  });

const strict = { additionalProperties: false } as const;
/** An object whose keys all have defaults, so an absent section is filled in too. */
const Section = <T extends Parameters<typeof Type.Object>[0]>(props: T, description: string) =>
  Type.Object(props, { ...strict, default: {}, description });

export const ListenSchema = Section(
  {
    host: Type.String({ default: '0.0.0.0', description: 'address the proxy port binds' }),
    port: Port(8080),
  },
  'The proxy (data-plane) listener. The PORT environment variable overrides `port`.',
);

export const AdminSchema = Section(
  {
    host: Type.String({ default: '127.0.0.1', description: 'address the admin port binds' }),
    port: Port(9080),
    token: Type.String({
      default: '',
      description: 'bearer token the admin API requires; required when `host` is not a loopback address',
    }),
  },
  'The admin (control-plane) listener: probes, metrics, management API.',
);

export const LimitsSchema = Section(
  {
    bodySize: Size('10mb'),
    headersTimeout: Duration('10s', {
      min: '100ms',
      why: 'node enforces it at most every 100 ms, and at 0 a client could take forever to send its headers',
    }),
    requestTimeout: Duration('60s', {
      zero: 'no limit on the whole request (headersTimeout still applies)',
    }),
    keepAliveTimeout: Duration('5s', {
      min: '1ms',
      why: 'at 0 node never closes an idle keep-alive connection',
    }),
    maxHeaderSize: Size('16kb'),
    maxUrlLength: Size('8kb'),
    headersWithUnderscores: Type.Union(
      [Type.Literal('drop'), Type.Literal('reject'), Type.Literal('allow')],
      {
        default: 'drop',
        description:
          'request headers whose name has "_" (CGI-style upstreams read X_Real_IP as X-Real-IP): drop them, reject the request (400), or allow them (spellings of the headers the gateway controls are dropped still)',
      },
    ),
    sendTimeout: Duration('60s', {
      zero: 'never: a client that stops reading keeps its upstream exchange as long as it stays connected',
    }),
  },
  'Limits on what clients may send, and how slowly they send and read.',
);

/** `auto`, or a duration as `Duration` takes it; `auto` stays `auto` once loaded. */
const AutoOrDuration = (defaultValue: 'auto', description: string, autoMeans: string) =>
  Type.Transform(
    Type.Union(
      [
        Type.Literal('auto'),
        Type.String({ pattern: DURATION_PATTERN, format: DURATION_FORMAT }),
        Type.Integer({ minimum: 0, maximum: MAX_DURATION_MS }),
      ],
      {
        default: defaultValue,
        description,
        errorMessage: `must be "auto" (${autoMeans}), a duration such as "5s" or "500ms" (at most 24 days), or a number of milliseconds`,
      },
    ),
  )
    .Decode((v): number | 'auto' => (v === 'auto' ? 'auto' : parseDuration(v)))
    .Encode((v) => v);

export const ShutdownSchema = Section(
  {
    acceptGrace: AutoOrDuration(
      'auto',
      'after SIGTERM, how long the proxy port keeps accepting and serving (with /readyz 503 and Connection: close) before it closes, so that connections sent while the load balancer and Kubernetes endpoints catch up are not refused; "auto" = 5s when KUBERNETES_SERVICE_HOST is set (a Kubernetes pod), else 0',
      '5s in a Kubernetes pod, else 0',
    ),
    drainTimeout: Duration('30s', { zero: 'cut the remaining connections at once, without waiting' }),
  },
  'Graceful shutdown: on SIGTERM, /readyz turns 503, the proxy port accepts for `acceptGrace` more, then closes; in-flight requests get `drainTimeout` to finish.',
);

const TargetUrl = Type.String({
  pattern: '^https?://[^/?#\\s]+/?$',
  description: 'an upstream origin: http://host:port (no path)',
  errorMessage: 'must be an upstream origin such as "http://10.0.0.5:8080" (http or https, no path)',
});

const DNS_NAME =
  '^_?[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?(\\._?[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?)*\\.?$';

export const DiscoverySchema = Type.Object(
  {
    dns: Type.String({
      pattern: DNS_NAME,
      description:
        'a DNS name: its A/AAAA records (e.g. a headless Kubernetes Service) are the targets; a name starting with "_" is an SRV lookup (e.g. _http._tcp.orders.shop.svc.cluster.local), whose records give host and port',
      errorMessage:
        'must be a DNS name such as "orders.shop.svc.cluster.local", or an SRV name such as "_http._tcp.orders.shop.svc.cluster.local"',
    }),
    port: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 65535,
        description: "the targets' port for A/AAAA lookups (required there); SRV records carry their own",
        errorMessage: 'must be a port number from 1 to 65535',
      }),
    ),
    refresh: Duration('10s', { min: '100ms', why: 'each refresh is a DNS lookup' }),
    scheme: Type.Union([Type.Literal('http'), Type.Literal('https')], {
      default: 'http',
      description: 'scheme of the discovered targets',
    }),
  },
  {
    ...strict,
    description: 'targets found in DNS, re-resolved every `refresh` (sooner when a TTL is shorter)',
  },
);

export const HealthCheckSchema = Type.Object(
  {
    path: Type.String({
      pattern: '^/',
      default: '/health',
      description: 'path of the GET request sent to every target',
      errorMessage: 'must be a path starting with "/", such as "/health"',
    }),
    interval: Duration('5s', { min: '100ms', why: 'each check is a request to every target' }),
    timeout: Duration('1s', { min: '1ms', why: 'at 0 a check would have no timeout' }),
    healthyAfter: Type.Integer({
      minimum: 1,
      default: 2,
      description: 'consecutive passing checks that make an unhealthy target healthy',
    }),
    unhealthyAfter: Type.Integer({
      minimum: 1,
      default: 3,
      description: 'consecutive failing checks that make a healthy target unhealthy',
    }),
  },
  { ...strict, description: 'active health checks: a GET to every target each `interval`; 2xx/3xx passes' },
);

export const PassiveHealthSchema = Section(
  {
    consecutiveErrors: Type.Integer({
      minimum: 0,
      default: 5,
      description:
        'consecutive connection errors, timeouts or 5xx answers that eject a target from balancing; 0 = off',
    }),
    ejectFor: Duration('10s', { min: '1ms', why: 'a target ejected for 0 is not ejected' }),
    maxEjectFor: Duration('5m', { min: '1ms' }),
    maxEjectedPercent: Type.Integer({
      minimum: 0,
      maximum: 100,
      default: 50,
      description: "at most this share of a service's targets is ejected at once",
    }),
  },
  'passive health: a target failing `consecutiveErrors` times in a row is ejected for `ejectFor`, doubling with each ejection in a row up to `maxEjectFor`',
);

export const CircuitBreakerSchema = Section(
  {
    enabled: Type.Boolean({ default: true, description: 'false = no breaker for this service' }),
    errorRate: Type.Number({
      exclusiveMinimum: 0,
      maximum: 1,
      default: 0.5,
      description: 'share of failed requests in `window` that opens the breaker',
    }),
    window: Duration('10s', { min: '100ms', why: 'the error rate is measured over this window' }),
    minRequests: Type.Integer({
      minimum: 1,
      default: 20,
      description: 'requests the window must hold before the breaker may open',
    }),
    openFor: Duration('30s', { min: '1ms', why: 'a breaker open for 0 stops nothing' }),
    probes: Type.Integer({
      minimum: 1,
      default: 3,
      description: 'requests let through while half-open; all must succeed to close the breaker',
    }),
  },
  'circuit breaker: while open, requests fail fast with 503 circuit_open',
);

const RetryOn = Type.Union(
  [
    Type.Literal('connect-error'),
    Type.Literal('timeout'),
    Type.Literal('reset'),
    Type.Integer({ minimum: 500, maximum: 599 }),
  ],
  {
    errorMessage: 'must be "connect-error", "timeout", "reset" or a 5xx status code such as 503',
  },
);

export const RetrySchema = Section(
  {
    attempts: Type.Integer({
      minimum: 1,
      maximum: 10,
      default: 3,
      description: 'attempts in all, the first included; 1 = no retries',
    }),
    backoff: Duration('50ms', { zero: 'retry at once' }),
    maxBackoff: Duration('1s', { zero: 'retry at once (backoff must be 0 too)' }),
    on: Type.Array(RetryOn, {
      default: ['connect-error', 'reset', 502, 503, 504],
      uniqueItems: true,
      description:
        'what is retried: connect-error (refused, unreachable, connect timeout: the request never reached the target), reset (the connection broke or the response was invalid before any of it reached the client), timeout (no response headers in time), and 5xx statuses',
    }),
    maxRetryAfter: Duration('2s', {
      zero: 'a status whose Retry-After asks for any wait is not retried',
    }),
    budget: Type.Number({
      minimum: 0,
      maximum: 1,
      default: 0.2,
      description: "retries are at most this share of the service's requests (over the last 10 s)",
    }),
    minRetries: Type.Integer({
      minimum: 0,
      default: 10,
      description: 'retries allowed in any 10 s whatever the budget, so a quiet service can still retry',
    }),
    deadline: Duration('30s', { min: '1ms', why: 'it bounds the whole request, retries included' }),
  },
  'retries of idempotent requests (GET, HEAD, OPTIONS, PUT, DELETE, or with Idempotency-Key) on another target',
);

export const DnsSchema = Type.Object(
  {
    servers: Type.Array(
      Type.String({
        pattern:
          '^(\\d{1,3}(\\.\\d{1,3}){3}(:\\d{1,5})?|\\[[0-9A-Fa-f:.]+\\](:\\d{1,5})?|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$',
        errorMessage: 'must be a DNS server address such as "10.96.0.10", "127.0.0.1:5353" or "[::1]:53"',
      }),
      {
        minItems: 1,
        description: "DNS servers for `discovery` lookups (ip or ip:port); default: the system's",
      },
    ),
    timeout: Duration('2s', { min: '1ms', why: 'a lookup must be given some time' }),
  },
  { ...strict, description: 'the resolver `discovery` uses' },
);

export const ServiceSchema = Type.Object(
  {
    targets: Type.Optional(
      Type.Array(TargetUrl, { minItems: 1, description: 'static upstream origins (or use `discovery`)' }),
    ),
    discovery: Type.Optional(DiscoverySchema),
    balancer: Type.Union(
      [Type.Literal('round-robin'), Type.Literal('least-request'), Type.Literal('random')],
      {
        default: 'round-robin',
        description:
          'how a target is picked among the healthy ones: round-robin, least-request (the less busy of two picked at random), random',
      },
    ),
    timeouts: Section(
      {
        connect: Duration('2s', { min: '1ms', why: 'at 0 a connection attempt would have no timeout' }),
        response: Duration('15s', { min: '1ms', why: 'at 0 a response would have no timeout' }),
      },
      'connect: TCP connect to a target; response: until the response headers arrive, and the longest pause between body chunks',
    ),
    pool: Section(
      {
        connections: Type.Integer({ minimum: 1, default: 128, description: 'max connections per target' }),
        keepAlive: Duration('60s', {
          min: '1ms',
          why: 'at 0 idle connections to the target would never be closed',
        }),
      },
      'keep-alive connection pool per target',
    ),
    healthCheck: Type.Optional(HealthCheckSchema),
    passiveHealth: PassiveHealthSchema,
    circuitBreaker: CircuitBreakerSchema,
    retry: RetrySchema,
  },
  { ...strict, description: 'an upstream service: `targets` or `discovery`' },
);

export const HTTP_METHODS = [
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'PATCH',
  'DELETE',
  'OPTIONS',
  'TRACE',
  'CONNECT',
] as const;

export const RouteSchema = Type.Object(
  {
    name: Type.String({
      pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]*$',
      description: 'unique route name',
      errorMessage:
        'must be a name of letters, digits, "_", ".", ":" and "-", starting with a letter or digit',
    }),
    match: Type.Object(
      {
        host: Type.Optional(
          Type.String({
            pattern:
              '^(\\*\\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$',
            description: 'exact host, or *.suffix; absent = any host',
            errorMessage:
              'must be a host name such as "api.example.com", or "*." and a domain such as "*.example.com" (no port)',
          }),
        ),
        path: Type.String({
          pattern: '^/',
          description: 'path pattern: `*` is one segment, `**` (last) any rest of the path',
          errorMessage: 'must be a path pattern starting with "/", such as "/api/orders/*"',
        }),
        methods: Type.Optional(
          Type.Array(Type.Union(HTTP_METHODS.map((m) => Type.Literal(m)) as TLiteral<HttpMethod>[]), {
            minItems: 1,
            uniqueItems: true,
            description: 'absent = all methods',
          }),
        ),
      },
      strict,
    ),
    service: Type.String({ description: 'name of a service in `services`' }),
    auth: Type.Optional(
      Type.Array(Type.Union([Type.Literal('jwt'), Type.Literal('apiKey')]), {
        uniqueItems: true,
        description: 'credentials accepted on this route, any one suffices; [] or absent = public',
      }),
    ),
    permissions: Type.Optional(
      Type.Array(Type.String({ pattern: '^[A-Za-z0-9_.-]+:[A-Za-z0-9_.*-]+$|^\\*$' }), {
        uniqueItems: true,
        description: 'permissions (resource:action) the consumer must all have; needs `auth`',
      }),
    ),
    rateLimit: Type.Optional(
      Type.Union([Type.Literal('tier'), Type.Literal('ip'), Type.Literal('off')], {
        description:
          'tier: by consumer and its tier (anonymous callers by IP, with rateLimit.anonymousTier); ip: by client IP with rateLimit.anonymousTier; off (default)',
      }),
    ),
    stripPrefix: Type.Optional(
      Type.String({
        pattern: '^/',
        description: 'removed from the start of the path before proxying',
        errorMessage: 'must be a path starting with "/", such as "/api"',
      }),
    ),
  },
  { ...strict, description: 'a route: which requests go to which service' },
);

export const ElasticsearchSinkSchema = Type.Object(
  {
    url: Type.String({
      pattern: '^https?://[^\\s]+$',
      description: 'Elasticsearch base URL; records go to `<url>/_bulk`',
      errorMessage: 'must be an http(s) URL such as "http://127.0.0.1:9200"',
    }),
    index: Type.String({
      pattern: '^[a-z0-9][a-z0-9._-]*$',
      default: 'gatehouse-access',
      description: 'index (or data stream) the records are written to',
      errorMessage: 'must be a lower-case index name such as "gatehouse-access"',
    }),
    batchSize: Type.Integer({
      minimum: 1,
      default: 500,
      description: 'records per `_bulk` request, at most',
    }),
    flushInterval: Duration('1s', { min: '10ms', why: 'each flush can be a _bulk request' }),
    maxBuffer: Type.Integer({
      minimum: 1,
      default: 10000,
      description: 'records held while Elasticsearch is slow or down; when full the oldest are dropped',
    }),
    timeout: Duration('10s', { min: '1ms', why: 'a _bulk request must be given some time' }),
    maxBackoff: Duration('30s', {
      min: '100ms',
      why: 'it spaces the retries while Elasticsearch fails',
    }),
    apiKey: Type.Optional(Type.String({ description: 'sent as `Authorization: ApiKey <apiKey>`' })),
  },
  { ...strict, description: 'ship access-log records to Elasticsearch with the `_bulk` API' },
);

export const AccessLogSchema = Section(
  {
    stdout: Type.Boolean({ default: false, description: 'write access-log records to stdout as JSON lines' }),
    elasticsearch: Type.Optional(ElasticsearchSinkSchema),
  },
  'Access logs: one record per request, buffered off the request path and shipped in batches.',
);

export const LoggingSchema = Section(
  {
    level: Type.Union(
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
      { default: 'info', description: 'process log level (LOG_LEVEL env overrides)' },
    ),
    access: AccessLogSchema,
  },
  'Structured process logs (JSON lines on stdout) and access logs.',
);

export const TracingSchema = Type.Object(
  {
    otlpUrl: Type.Optional(
      Type.String({
        pattern: '^https?://[^\\s]+$',
        description: 'OTLP/HTTP collector base URL; spans go to `<otlpUrl>/v1/traces`. Absent = no export',
        errorMessage: 'must be an http(s) URL such as "http://127.0.0.1:4318"',
      }),
    ),
    sampleRate: Type.Number({
      minimum: 0,
      maximum: 1,
      default: 1,
      description: "share of new traces sampled (a continued trace keeps its caller's sampled flag)",
    }),
    serviceName: Type.String({ default: 'gatehouse', description: 'service.name of exported spans' }),
  },
  { ...strict, description: 'W3C trace context (always continued or started) and optional OTLP span export' },
);

export const SERVICE_NAME = '^[A-Za-z0-9][A-Za-z0-9_.-]*$';
export const SERVICE_NAME_MESSAGE =
  'is not a valid service name: use letters, digits, "_", "." and "-", starting with a letter or digit';

const TIER_NAME = '^[A-Za-z0-9][A-Za-z0-9_.-]*$';

export const LimitSchema = Type.Object(
  {
    requests: Type.Integer({ minimum: 1, description: 'requests allowed per window' }),
    per: Type.String({
      pattern: '^\\s*\\d+(\\.\\d+)?\\s*(s|m|h|d)\\s*$',
      description: 'the sliding window: "1s", "10s", "1m", "1h", "1d" (whole seconds or more)',
      errorMessage: 'must be a window such as "1s", "1m", "1h" or "1d"',
    }),
  },
  { ...strict, description: 'a sliding-window limit' },
);

export const TierSchema = Type.Object(
  {
    limits: Type.Array(LimitSchema, { default: [], description: 'all must allow a request' }),
    quota: Type.Optional(
      Type.Object(
        {
          requests: Type.Integer({ minimum: 1, description: 'requests allowed per calendar period (UTC)' }),
          per: Type.Union([Type.Literal('day'), Type.Literal('month')], { description: 'day | month (UTC)' }),
        },
        strict,
      ),
    ),
  },
  { ...strict, description: 'a subscription tier: its limits and quota' },
);

export const RateLimitSchema = Type.Object(
  {
    onStoreError: Type.Union([Type.Literal('open'), Type.Literal('closed'), Type.Literal('local')], {
      default: 'local',
      description:
        'while Redis is unreachable: open (allow), closed (503 store_unavailable), local (per-instance limits)',
    }),
    anonymousTier: Type.String({
      default: 'anonymous',
      description: 'tier for `rateLimit: ip` and anonymous callers',
    }),
    defaultTier: Type.String({ default: 'free', description: 'tier of a consumer that has none' }),
    headers: Type.Union(
      [Type.Literal('draft'), Type.Literal('legacy'), Type.Literal('both'), Type.Literal('none')],
      {
        default: 'both',
        description: 'RateLimit-Policy/RateLimit (draft), X-RateLimit-* (legacy), both, none',
      },
    ),
    keyPrefix: Type.String({ default: 'gh:', description: 'prefix of every Redis key' }),
    ipv6Prefix: Type.Integer({
      minimum: 1,
      maximum: 128,
      default: 64,
      description:
        'IPv6 clients are counted by network: the first N bits of their address (64: one /64 per client; 128: each address). IPv4 clients by address',
    }),
    unauthenticated: Type.Optional(
      Type.Object(TierSchema.properties, {
        ...strict,
        description:
          'limits (and quota) on failed authentications per client IP, on routes with `auth`: counted only when credentials are missing or invalid; once over, the address is refused (429) before its credentials are checked, until Retry-After',
      }),
    ),
    memory: Section(
      {
        maxEntries: Type.Integer({
          minimum: 1,
          // about 5 GB of counters
          maximum: 10_000_000,
          default: 100_000,
          description:
            'subjects (client IPs, consumers) counted in memory at most; past it the least recently used is evicted and starts from zero when it comes back. Each costs about 0.5 KB (100 000: about 50 MB)',
        }),
      },
      'the in-process counters: the store without `redis`, and the `onStoreError: local` fallback',
    ),
    tiers: Type.Record(Type.String({ pattern: TIER_NAME }), TierSchema, {
      default: {},
      additionalProperties: false,
      description: 'tiers by name',
    }),
  },
  { ...strict, default: {}, description: 'Rate limits and quotas by tier (docs/rate-limiting.md).' },
);

export const RedisSchema = Type.Object(
  {
    url: Type.Optional(
      Type.String({ pattern: '^rediss?://', description: 'one Redis node: redis://host:6379' }),
    ),
    cluster: Type.Optional(
      Type.Array(Type.String({ pattern: '^redis://' }), {
        minItems: 1,
        description: 'Redis Cluster seed nodes',
      }),
    ),
    timeout: Duration('50ms', { min: '1ms', why: '0 would mean no timeout at all' }),
  },
  { ...strict, description: 'Shared counters. Absent: in-memory counters (one instance only).' },
);

const JWT_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
] as const;
export type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number];

export const JwtSchema = Type.Object(
  {
    algorithms: Type.Array(
      Type.Union(JWT_ALGORITHMS.map((a) => Type.Literal(a)) as TLiteral<JwtAlgorithm>[]),
      {
        default: ['RS256'],
        minItems: 1,
        uniqueItems: true,
        description: 'accepted algorithms (never taken from the token)',
      },
    ),
    issuer: Type.Optional(Type.String({ description: 'required `iss`' })),
    audience: Type.Optional(Type.String({ description: 'required `aud`' })),
    jwksUrl: Type.Optional(
      Type.String({ pattern: '^https?://', description: 'JWKS endpoint (cached, refreshed, rotated)' }),
    ),
    publicKeys: Type.Optional(
      Type.Array(Type.String(), { minItems: 1, description: 'PEM files (SPKI public keys)' }),
    ),
    clockTolerance: Duration('60s', { zero: 'no tolerance: exp and nbf are checked to the second' }),
    maxTokenAge: Type.Optional(
      // a duration described as this field: spreading keeps the transform (its symbol keys)
      {
        ...Duration(undefined, { min: '1s', why: 'tokens are issued with a precision of one second' }),
        description:
          'refuse tokens issued longer ago than this (`iat`, which becomes required); absent = no limit',
      },
    ),
    types: Type.Optional(
      Type.Array(
        Type.String({
          pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]+(/[A-Za-z0-9!#$%&'*+.^_`|~-]+)?$",
          description: 'a media type, `application/` optional (`JWT`, `at+jwt`)',
          errorMessage: 'must be a media type such as "JWT" or "at+jwt"',
        }),
        {
          minItems: 1,
          uniqueItems: true,
          description:
            'allowed `typ` header values (case-insensitive, `application/` optional); the header is then required; absent = any',
        },
      ),
    ),
    rolesClaim: Type.String({ default: 'roles', description: 'claim holding an array of role names' }),
    tierClaim: Type.String({ default: 'tier', description: 'claim holding the subscription tier' }),
    requireExp: Type.Boolean({ default: true, description: 'refuse tokens without `exp`' }),
  },
  { ...strict, description: 'JWT bearer tokens' },
);

export const ApiKeySchema = Type.Object(
  {
    header: Type.String({ default: 'x-api-key', description: 'request header carrying the key' }),
    secret: Type.String({
      default: '',
      description: 'server secret of the keyed hash (HMAC-SHA-256) of stored keys',
    }),
  },
  { ...strict, description: 'API keys issued by `gatehouse keys`' },
);

export const AuthSchema = Type.Object(
  {
    jwt: Type.Optional(JwtSchema),
    apiKey: Type.Optional(ApiKeySchema),
    forwardCredentials: Type.Boolean({
      default: true,
      description:
        'send the upstream the JWT the gateway verified, as `Authorization: Bearer <token>` (false: never); an API key and any credential the gateway did not verify are never sent on a route with `auth`',
    }),
  },
  { ...strict, description: 'How consumers authenticate (docs/authentication.md).' },
);

export const RbacSchema = Type.Object(
  {
    roles: Type.Record(
      Type.String({ pattern: '^[A-Za-z0-9_.-]+$' }),
      Type.Array(Type.String({ pattern: '^[A-Za-z0-9_.*-]+:[A-Za-z0-9_.*-]+$|^\\*$' }), {
        uniqueItems: true,
      }),
      {
        default: {},
        additionalProperties: false,
        description: 'role → permissions (resource:action, orders:*, *)',
      },
    ),
  },
  { ...strict, default: {}, description: 'Roles and the permissions they grant.' },
);

export const DatabaseSchema = Type.Object(
  {
    url: Type.Optional(
      Type.String({ pattern: '^postgres(ql)?://', description: 'PostgreSQL; absent = embedded SQLite' }),
    ),
    file: Type.String({ default: './data/gatehouse.db', description: 'the embedded SQLite file (no `url`)' }),
  },
  { ...strict, default: {}, description: 'Where API keys live.' },
);

export const ConfigSchema = Type.Object(
  {
    listen: ListenSchema,
    admin: AdminSchema,
    workers: Type.Union([Type.Integer({ minimum: 1 }), Type.Literal('auto')], {
      default: 1,
      description:
        'processes serving the proxy port; "auto" = one per CPU this process may use: the cgroup CPU limit (a container\'s limit) rounded up, else one per core',
      errorMessage: 'must be a number of processes (1 or more) or "auto" (one per CPU core)',
    }),
    configWatch: Type.Boolean({
      default: true,
      description:
        'reload when the config file changes on disk (its directory is watched, so a Kubernetes ConfigMap update is seen); false: only SIGHUP and POST /reload reload',
    }),
    trustedProxies: Type.Array(Type.String(), {
      default: [],
      description: 'CIDRs or addresses whose X-Forwarded-* headers are believed',
    }),
    limits: LimitsSchema,
    shutdown: ShutdownSchema,
    // additionalProperties: false, or a service whose name fails the pattern would be ignored
    // (neither validated nor rejected) while routes could still name it.
    services: Type.Record(Type.String({ pattern: SERVICE_NAME }), ServiceSchema, {
      default: {},
      additionalProperties: false,
      propertyNames: {
        pattern: SERVICE_NAME,
        errorMessage: SERVICE_NAME_MESSAGE,
      },
      description: 'upstream services, by name',
    }),
    routes: Type.Array(RouteSchema, { default: [], description: 'routes; the most specific match wins' }),
    dns: Type.Optional(DnsSchema),
    redis: Type.Optional(RedisSchema),
    database: DatabaseSchema,
    auth: Type.Optional(AuthSchema),
    rbac: RbacSchema,
    rateLimit: RateLimitSchema,
    logging: LoggingSchema,
    tracing: Type.Optional(TracingSchema),
  },
  {
    ...strict,
    $id: 'https://gatehouse.dev/schema/config.json',
    title: 'Gatehouse configuration',
  },
);

export type GatewayConfig = StaticDecode<typeof ConfigSchema>;
export type ServiceConfig = StaticDecode<typeof ServiceSchema>;
export type AccessLogConfig = StaticDecode<typeof AccessLogSchema>;
export type ElasticsearchSinkConfig = StaticDecode<typeof ElasticsearchSinkSchema>;
export type TracingConfig = StaticDecode<typeof TracingSchema>;
export type DnsConfig = StaticDecode<typeof DnsSchema>;
export type DiscoveryConfig = StaticDecode<typeof DiscoverySchema>;
export type HealthCheckConfig = StaticDecode<typeof HealthCheckSchema>;
export type PassiveHealthConfig = StaticDecode<typeof PassiveHealthSchema>;
export type CircuitBreakerConfig = StaticDecode<typeof CircuitBreakerSchema>;
export type RetryConfig = StaticDecode<typeof RetrySchema>;
export type RouteConfig = StaticDecode<typeof RouteSchema>;
export type RateLimitConfig = StaticDecode<typeof RateLimitSchema>;
export type RedisConfig = StaticDecode<typeof RedisSchema>;
export type JwtConfig = StaticDecode<typeof JwtSchema>;
export type ApiKeyConfig = StaticDecode<typeof ApiKeySchema>;
export type HttpMethod = (typeof HTTP_METHODS)[number];

/**
 * The JSON Schema document `gatehouse schema` prints: the schema of the file as users write it.
 * The loader validates after filling in defaults, so internally every defaulted key is
 * `required`; here a key with a default is optional, or an editor would flag a file that leaves
 * out `workers`.
 */
export function jsonSchema(): Record<string, unknown> {
  const schema = JSON.parse(JSON.stringify(ConfigSchema)) as Record<string, unknown>;
  return { $schema: 'http://json-schema.org/draft-07/schema#', ...(optionalDefaults(schema) as object) };
}

function optionalDefaults(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(optionalDefaults);
  if (typeof node !== 'object' || node === null) return node;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node)) out[key] = optionalDefaults(value);
  const props = out.properties as Record<string, Record<string, unknown>> | undefined;
  if (Array.isArray(out.required) && props) {
    out.required = out.required.filter((k) => typeof k !== 'string' || !('default' in (props[k] ?? {})));
    if ((out.required as unknown[]).length === 0) delete out.required;
  }
  return out;
}

export type { TSchema };
