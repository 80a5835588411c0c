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

/** A duration in the file ("10s" or milliseconds); a number of milliseconds once loaded. */
export const Duration = (defaultValue?: string) =>
  Type.Transform(
    Type.Union(
      [
        Type.String({ pattern: DURATION_PATTERN, format: DURATION_FORMAT }),
        Type.Integer({ minimum: 0, maximum: MAX_DURATION_MS }),
      ],
      {
        description: 'a duration: "250ms", "10s", "5m", "1h", "1d", or a number of milliseconds',
        errorMessage:
          'must be a duration such as "250ms", "10s", "5m", "1h" or "1d" (at most 24 days), or a number of milliseconds',
        ...(defaultValue === undefined ? {} : { default: defaultValue }),
      },
    ),
  )
    .Decode((v) => parseDuration(v))
    .Encode((ms) => ms);

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
    headersTimeout: Duration('10s'),
    requestTimeout: Duration('60s'),
    keepAliveTimeout: Duration('5s'),
    maxHeaderSize: Size('16kb'),
    maxUrlLength: Size('8kb'),
  },
  'Limits on what clients may send, and how slowly.',
);

export const ShutdownSchema = Section(
  { drainTimeout: Duration('30s') },
  'Graceful shutdown: how long in-flight requests may take to finish after SIGTERM.',
);

const TargetUrl = Type.String({
  pattern: '^https?://[^/?#\\s]+/?$',
  description: 'an upstream origin: http://host:port (no path)',
  errorMessage: 'must be an upstream origin such as "http://10.0.0.5:8080" (http or https, no path)',
});

export const ServiceSchema = Type.Object(
  {
    targets: Type.Array(TargetUrl, { minItems: 1, description: 'static upstream origins' }),
    balancer: Type.Union([Type.Literal('round-robin')], {
      default: 'round-robin',
      description: 'how a target is picked for each request',
    }),
    timeouts: Section(
      {
        connect: Duration('2s'),
        response: Duration('15s'),
      },
      'connect: TCP connect to a target; response: until the response headers arrive, and the longest pause between body chunks',
    ),
    pool: Section(
      {
        connections: Type.Integer({ minimum: 1, default: 128, description: 'max connections per target' }),
        keepAlive: Duration('60s'),
      },
      'keep-alive connection pool per target',
    ),
  },
  { ...strict, description: 'an upstream service' },
);

const HTTP_METHODS = [
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

export const LoggingSchema = Section(
  {
    level: Type.Union(
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
      { default: 'info', description: 'process log level (LOG_LEVEL env overrides)' },
    ),
  },
  'Structured process logs (JSON lines on stdout).',
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
    timeout: Duration('50ms'),
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
    clockTolerance: Duration('60s'),
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
  { jwt: Type.Optional(JwtSchema), apiKey: Type.Optional(ApiKeySchema) },
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
      description: 'processes serving the proxy port; "auto" = one per CPU core',
      errorMessage: 'must be a number of processes (1 or more) or "auto" (one per CPU core)',
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
    redis: Type.Optional(RedisSchema),
    database: DatabaseSchema,
    auth: Type.Optional(AuthSchema),
    rbac: RbacSchema,
    rateLimit: RateLimitSchema,
    logging: LoggingSchema,
  },
  {
    ...strict,
    $id: 'https://gatehouse.dev/schema/config.json',
    title: 'Gatehouse configuration',
  },
);

export type GatewayConfig = StaticDecode<typeof ConfigSchema>;
export type ServiceConfig = StaticDecode<typeof ServiceSchema>;
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
