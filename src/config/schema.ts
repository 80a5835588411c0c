/**
 * The config file's schema: every section, each defined beside the code it configures, put
 * together here so that the whole file's shape reads in one place. The TypeScript types of the
 * config are derived from it (`GatewayConfig` is what the loader returns: defaults applied,
 * durations and sizes in milliseconds and bytes), and `gatehouse schema` prints it as JSON Schema.
 *
 * The field types the sections share (durations, sizes, ports) are in fields.ts; the checks
 * across fields that a schema cannot express are beside their sections too, listed in checks.ts.
 */
import { Type, type StaticDecode, type TSchema } from '@sinclair/typebox';
import { RouteAuth, RoutePermissions, AuthSchema, RbacSchema } from '../auth/config.js';
import { strict } from './fields.js';
import { LoggingSchema, TracingSchema } from '../observability/config.js';
import { RateLimitSchema, RouteRateLimit } from '../ratelimit/config.js';
import { RouteMatch, RouteName, RouteService, StripPrefix } from '../router/config.js';
import { RouteCanary, RouteServices, RouteSticky } from '../router/split-config.js';
import { RouteLimits, RouteRetry, RouteTimeouts } from '../upstream/config.js';
import {
  CorsSchema,
  IpFilterSchema,
  RedirectSchema,
  RespondSchema,
  RouteCors,
  TransformSchema,
} from '../router/policy-config.js';
import {
  AdminSchema,
  ConfigWatchSchema,
  LimitsSchema,
  ListenSchema,
  ShutdownSchema,
  TrustedProxiesSchema,
  WorkersSchema,
} from '../server/config.js';
import { DatabaseSchema, RedisSchema } from '../stores/config.js';
import { DnsSchema, ServicesSchema } from '../upstream/config.js';

/** A route: which requests (router), what they need (auth, rate limiting), where they go. */
export const RouteSchema = Type.Object(
  {
    name: RouteName,
    match: RouteMatch,
    // `service`, or `services` with weights: exactly one (router/split-config.ts checks), and
    // neither on a route that answers itself (`respond`, `redirect`: router/policy-config.ts)
    service: Type.Optional(RouteService),
    auth: Type.Optional(RouteAuth),
    permissions: Type.Optional(RoutePermissions),
    rateLimit: Type.Optional(RouteRateLimit),
    stripPrefix: Type.Optional(StripPrefix),
    // weighted and canary routing (router/split-config.ts)
    services: Type.Optional(RouteServices),
    canary: Type.Optional(RouteCanary),
    sticky: Type.Optional(RouteSticky),
    // the route's own upstream limits (upstream/config.ts)
    limits: Type.Optional(RouteLimits),
    timeouts: Type.Optional(RouteTimeouts),
    retry: Type.Optional(RouteRetry),
    // edge policies (router/policy-config.ts)
    cors: Type.Optional(RouteCors),
    ip: Type.Optional(IpFilterSchema),
    transform: Type.Optional(TransformSchema),
    respond: Type.Optional(RespondSchema),
    redirect: Type.Optional(RedirectSchema),
  },
  { ...strict, description: 'a route: which requests go to which service' },
);

export const ConfigSchema = Type.Object(
  {
    listen: ListenSchema,
    admin: AdminSchema,
    workers: WorkersSchema,
    configWatch: ConfigWatchSchema,
    trustedProxies: TrustedProxiesSchema,
    limits: LimitsSchema,
    shutdown: ShutdownSchema,
    services: ServicesSchema,
    routes: Type.Array(RouteSchema, { default: [], description: 'routes; the most specific match wins' }),
    dns: Type.Optional(DnsSchema),
    redis: Type.Optional(RedisSchema),
    database: DatabaseSchema,
    auth: Type.Optional(AuthSchema),
    rbac: RbacSchema,
    rateLimit: RateLimitSchema,
    logging: LoggingSchema,
    tracing: Type.Optional(TracingSchema),
    // edge policies: the defaults of every route (router/policy-config.ts)
    cors: Type.Optional(CorsSchema),
    ip: Type.Optional(IpFilterSchema),
  },
  {
    ...strict,
    $id: 'https://gatehouse.dev/schema/config.json',
    title: 'Gatehouse configuration',
  },
);

export type GatewayConfig = StaticDecode<typeof ConfigSchema>;
export type RouteConfig = StaticDecode<typeof RouteSchema>;

// Each section's schema and type, where its owner defines it.
export { Duration, Size, type DurationOptions } from './fields.js';
export { AdminSchema, LimitsSchema, ListenSchema, ShutdownSchema } from '../server/config.js';
export {
  CircuitBreakerSchema,
  DiscoverySchema,
  DnsSchema,
  HealthCheckSchema,
  PassiveHealthSchema,
  RetrySchema,
  SERVICE_NAME,
  SERVICE_NAME_MESSAGE,
  ServiceSchema,
  type CircuitBreakerConfig,
  type DiscoveryConfig,
  type DnsConfig,
  type HealthCheckConfig,
  type PassiveHealthConfig,
  type RetryConfig,
  type ServiceConfig,
} from '../upstream/config.js';
export { HTTP_METHODS, type HttpMethod } from '../router/config.js';
export {
  AccessLogSchema,
  ElasticsearchSinkSchema,
  LoggingSchema,
  TracingSchema,
  type AccessLogConfig,
  type ElasticsearchSinkConfig,
  type TracingConfig,
} from '../observability/config.js';
export { LimitSchema, RateLimitSchema, TierSchema, type RateLimitConfig } from '../ratelimit/config.js';
export { DatabaseSchema, RedisSchema, type RedisConfig } from '../stores/config.js';
export {
  ApiKeySchema,
  AuthSchema,
  JwtSchema,
  RbacSchema,
  type ApiKeyConfig,
  type JwtAlgorithm,
  type JwtConfig,
} from '../auth/config.js';

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
