/**
 * The config file's schema. The TypeScript types of the config are derived from it
 * (`GatewayConfig` is what the loader returns: defaults applied, durations and sizes in
 * milliseconds and bytes), and `gatehouse schema` prints it as JSON Schema.
 */
import { Type, type StaticDecode, type TSchema } from '@sinclair/typebox';
import { DURATION_PATTERN, SIZE_PATTERN, parseDuration, parseSize } from './units.js';

/** A duration in the file ("10s" or milliseconds); a number of milliseconds once loaded. */
export const Duration = (defaultValue?: string) =>
  Type.Transform(
    Type.Union([Type.String({ pattern: DURATION_PATTERN }), Type.Integer({ minimum: 0 })], {
      description: 'a duration: "250ms", "10s", "5m", "1h", "1d", or a number of milliseconds',
      ...(defaultValue === undefined ? {} : { default: defaultValue }),
    }),
  )
    .Decode((v) => parseDuration(v))
    .Encode((ms) => ms);

/** A size in the file ("10mb" or bytes); a number of bytes once loaded. */
export const Size = (defaultValue?: string) =>
  Type.Transform(
    Type.Union([Type.String({ pattern: SIZE_PATTERN }), Type.Integer({ minimum: 0 })], {
      description: 'a size: "512b", "64kb", "10mb", "1gb", or a number of bytes',
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
    name: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]*$', description: 'unique route name' }),
    match: Type.Object(
      {
        host: Type.Optional(
          Type.String({
            pattern:
              '^(\\*\\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$',
            description: 'exact host, or *.suffix; absent = any host',
          }),
        ),
        path: Type.String({
          pattern: '^/',
          description: 'path pattern: `*` is one segment, `**` (last) any rest of the path',
        }),
        methods: Type.Optional(
          Type.Array(Type.Union(HTTP_METHODS.map((m) => Type.Literal(m))), {
            minItems: 1,
            uniqueItems: true,
            description: 'absent = all methods',
          }),
        ),
      },
      strict,
    ),
    service: Type.String({ description: 'name of a service in `services`' }),
    stripPrefix: Type.Optional(
      Type.String({ pattern: '^/', description: 'removed from the start of the path before proxying' }),
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

export const ConfigSchema = Type.Object(
  {
    listen: ListenSchema,
    admin: AdminSchema,
    workers: Type.Union([Type.Integer({ minimum: 1 }), Type.Literal('auto')], {
      default: 1,
      description: 'processes serving the proxy port; "auto" = one per CPU core',
    }),
    trustedProxies: Type.Array(Type.String(), {
      default: [],
      description: 'CIDRs or addresses whose X-Forwarded-* headers are believed',
    }),
    limits: LimitsSchema,
    shutdown: ShutdownSchema,
    services: Type.Record(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$' }), ServiceSchema, {
      default: {},
      description: 'upstream services, by name',
    }),
    routes: Type.Array(RouteSchema, { default: [], description: 'routes; the most specific match wins' }),
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
export type HttpMethod = (typeof HTTP_METHODS)[number];

/** The JSON Schema document `gatehouse schema` prints. */
export function jsonSchema(): Record<string, unknown> {
  return JSON.parse(JSON.stringify(ConfigSchema)) as Record<string, unknown>;
}

export type { TSchema };
