/**
 * Everything the data plane needs, compiled from one config: the router, the services with
 * their pools, each route's stage chain. Built once per config load; swapped whole on reload.
 *
 * Ownership. A runtime holds resources that must be closed: the rate-limit store (counters, a
 * Redis connection), the authenticators (key caches, a database pool and its LISTEN connection)
 * and the services (pools, health checks, breaker). A reload compiles the next runtime from the
 * previous one: what did not change (same settings) is taken over, the rest is built anew. Until
 * the swap, the previous runtime still owns what both hold; after it, the new one does. So
 * `closeRuntime(rt, keep)` closes what `rt` holds and `keep` does not: the old runtime after a
 * swap (keep = the new one), a new runtime that failed to get ready (keep = the running one), the
 * running one at shutdown (keep = none). Each resource is closed once, by the last holder.
 */
import { isDeepStrictEqual } from 'node:util';
import type { GatewayConfig } from '../config/schema.js';
import { compileStages } from '../pipeline/chain.js';
import { STAGES } from '../pipeline/stages.js';
import {
  closeAuthenticators,
  createAuthenticators,
  tokenRevocations,
  type Authenticators,
} from '../auth/index.js';
import {
  createLimitStore,
  createRateLimiter,
  rateLimitUsed,
  sameLimitStore,
  type LimitStore,
  type RateLimiter,
} from '../ratelimit/limiter.js';
import { silentLogger, type Logger } from '../observability/logger.js';
import { startupTimed } from '../observability/startup-timing.js';
import type { GatewayMetrics } from '../observability/metrics.js';
import { Tracing } from '../observability/tracing/index.js';
import { parsePattern } from '../router/pattern.js';
import { Router } from '../router/router.js';
import { AUTHENTICATORS } from '../stages/authenticate/index.js';
import { METRICS } from '../stages/metrics.js';
import { RATE_LIMITER } from '../stages/rate-limit/index.js';
import { SERVICES } from '../stages/service-split/index.js';
import { primaryService } from '../router/split-config.js';
import { routeUpstreamPolicy } from '../upstream/route-policy.js';
import type { CompiledRoute, Dependency, StageDeps, StageInstance } from '../stages/stage.js';
import { TrustedProxies } from './client-address.js';
import { createDiscovery } from '../upstream/discovery/index.js';
import { Service } from '../upstream/service.js';
import { readsTlsFiles } from '../upstream/tls.js';

export type Runtime = {
  readonly config: GatewayConfig;
  readonly router: Router<CompiledRoute>;
  /** every compiled route, in the config's order (the admin API lists them) */
  readonly routes: readonly CompiledRoute[];
  readonly services: ReadonlyMap<string, Service>;
  readonly trustedProxies: TrustedProxies;
  readonly authenticators: Authenticators;
  /** the rate limiter (null when no route is rate limited) */
  readonly rateLimiter: RateLimiter | null;
  /** the rate limiter's store (null when no route is rate limited) */
  readonly limitStore: LimitStore | null;
  /** every route's stage instances (closed with the runtime) */
  readonly stages: readonly StageInstance[];
  /** trace context for every request (the gateway's, kept across reloads) */
  readonly tracing: Tracing;
};

/** Something a runtime holds and must close once. */
type Closable = { close(): Promise<void> };

/** What the server hands the stages: each capability under the key its stage declares. */
class Deps implements StageDeps {
  private readonly provided = new Map<Dependency<unknown>, unknown>();

  provide<T>(dep: Dependency<T>, value: T): this {
    this.provided.set(dep, value);
    return this;
  }

  get<T>(dep: Dependency<T>): T {
    if (!this.provided.has(dep)) throw new Error(`no ${dep.name} is provided to the stages`);
    return this.provided.get(dep) as T;
  }
}

/**
 * Compiles `config`. With `previous` (a reload), takes over from it the rate-limit store, the
 * authenticators and the services whose settings are unchanged (see the module comment). If
 * compiling fails, what it built is closed and the error thrown; `previous` is left as it was.
 */
export function compileRuntime(
  config: GatewayConfig,
  logger: Logger = silentLogger(),
  metrics: GatewayMetrics | null = null,
  tracing: Tracing = new Tracing(undefined, logger),
  previous: Runtime | null = null,
): Runtime {
  const built: Closable[] = [];
  try {
    return compile(config, logger, metrics, tracing, previous, built);
  } catch (err) {
    // nothing was readied yet: closing is quick, and the error is what the caller reports
    for (const r of built) void r.close().catch(() => undefined);
    throw err;
  }
}

function compile(
  config: GatewayConfig,
  logger: Logger,
  metrics: GatewayMetrics | null,
  tracing: Tracing,
  previous: Runtime | null,
  built: Closable[],
): Runtime {
  const fresh = <T extends Closable>(r: T): T => {
    built.push(r);
    return r;
  };
  let limitStore: LimitStore | null = null;
  if (rateLimitUsed(config)) {
    limitStore =
      previous?.limitStore && sameLimitStore(previous.config, config)
        ? previous.limitStore
        : fresh(createLimitStore(config, logger, metrics));
  }
  const reuse = previous ? reusableAuthenticators(previous, config) : {};
  // a rebuilt JWT authenticator starts from the running denylist (same Redis): no gap, no wait
  const seed =
    previous && isDeepStrictEqual(previous.config.redis, config.redis) ? previous.authenticators : null;
  const authenticators = createAuthenticators(config, logger, reuse, seed && tokenRevocations(seed));
  for (const a of [authenticators.jwt, authenticators.apiKey]) {
    if (a !== null && a !== reuse.jwt && a !== reuse.apiKey) fresh(a);
  }
  const rateLimiter = limitStore ? createRateLimiter(config, limitStore) : null;
  const deps = new Deps()
    .provide(AUTHENTICATORS, authenticators)
    .provide(RATE_LIMITER, rateLimiter)
    .provide(METRICS, metrics);
  const instances: StageInstance[] = [];
  const services = new Map<string, Service>();
  deps.provide(SERVICES, services);
  for (const [name, svc] of Object.entries(config.services)) {
    const kept = previous?.services.get(name);
    if (kept && previous && sameService(previous.config, config, name)) {
      services.set(name, kept);
      continue;
    }
    const source = createDiscovery(name, svc, config.dns, logger);
    services.set(name, fresh(new Service(name, svc, { source, logger, metrics: metrics?.forService(name) })));
  }
  const specs = config.routes.map((route) => {
    const pattern = parsePattern(route.match.path);
    if (!pattern.ok) throw new Error(`routes "${route.name}": ${pattern.reason}`); // checked by the loader
    // none: the route answers in its stages (respond, redirect; checked by the loader)
    const primary = primaryService(route);
    const service = primary === '' ? null : services.get(primary);
    if (service === undefined) throw new Error(`routes "${route.name}": unknown service ${primary}`);
    const stages = compileStages(STAGES, route, config, deps);
    instances.push(...stages.instances);
    const compiled: CompiledRoute = {
      name: route.name,
      config: route,
      service,
      stripLength: route.stripPrefix ? route.stripPrefix.replace(/\/$/, '').length : 0,
      ...stages,
      ...routeUpstreamPolicy(route, config.limits.bodySize, services),
    };
    return {
      host: route.match.host,
      segments: pattern.segments,
      methods: route.match.methods,
      value: compiled,
    };
  });
  return {
    config,
    router: new Router(specs),
    routes: specs.map((s) => s.value),
    services,
    trustedProxies: new TrustedProxies(config.trustedProxies),
    authenticators,
    rateLimiter,
    limitStore,
    stages: instances,
    tracing,
  };
}

/**
 * A service whose settings are deep-equal keeps its Service object: targets and their pools,
 * health, ejections, breaker. A discovered one also needs the same resolver settings.
 */
function sameService(before: GatewayConfig, after: GatewayConfig, name: string): boolean {
  const svc = after.services[name];
  return (
    isDeepStrictEqual(before.services[name], svc) &&
    // TLS files are read again on every reload (how a rotated CA or client certificate is picked up)
    (svc === undefined || !readsTlsFiles(svc)) &&
    (svc?.discovery === undefined || isDeepStrictEqual(before.dns, after.dns))
  );
}

/**
 * Authenticators kept across a reload. API keys: same `auth.apiKey` and `database` keep the key
 * cache and the database pool with its LISTEN connection. JWT: same `auth.jwt` keeps the JWKS key
 * set and the verified-token cache; keys from `publicKeys` files are read again on every reload
 * (cheap, and how a replaced file is picked up), so that authenticator is always rebuilt.
 */
function reusableAuthenticators(previous: Runtime, config: GatewayConfig): Partial<Authenticators> {
  const was = previous.config;
  const { jwt, apiKey } = previous.authenticators;
  const reuse: { -readonly [K in keyof Authenticators]?: Authenticators[K] } = {};
  if (
    jwt !== null &&
    config.auth?.jwt?.jwksUrl !== undefined &&
    isDeepStrictEqual(was.auth?.jwt, config.auth.jwt) &&
    // the denylist's connections are the authenticator's
    (config.auth.jwt.revocation === undefined || isDeepStrictEqual(was.redis, config.redis))
  ) {
    reuse.jwt = jwt;
  }
  if (
    apiKey !== null &&
    config.auth?.apiKey !== undefined &&
    isDeepStrictEqual(was.auth?.apiKey, config.auth.apiKey) &&
    isDeepStrictEqual(was.database, config.database)
  ) {
    reuse.apiKey = apiKey;
  }
  return reuse;
}

/** How long start and reload wait for the first DNS answers before going on without them. */
const DISCOVERY_READY_MS = 5000;

/**
 * Gets ready (bounded) what `rt` built itself: the store's connection, the authenticators' keys,
 * the services' first discovery answers. What it took over from `previous` is ready already.
 * Everything is waited for, then the first failure (if any) is thrown: when the caller closes
 * the runtime, nothing is still starting.
 */
export async function readyRuntime(rt: Runtime, previous: Runtime | null = null): Promise<void> {
  const held = previous ? holdings(previous) : new Set<Closable>();
  const waits: Array<Promise<unknown>> = [];
  if (rt.limitStore && !held.has(rt.limitStore))
    waits.push(startupTimed('rate-limit store ready', rt.limitStore.ready()));
  const { jwt, apiKey } = rt.authenticators;
  if (jwt?.ready && !held.has(jwt)) waits.push(startupTimed('JWT keys ready', jwt.ready()));
  if (apiKey?.ready && !held.has(apiKey)) waits.push(startupTimed('API keys ready', apiKey.ready()));
  for (const s of rt.services.values())
    if (!held.has(s)) waits.push(startupTimed(`service ${s.name} ready`, s.ready(DISCOVERY_READY_MS)));
  for (const result of await Promise.allSettled(waits)) {
    if (result.status === 'rejected') throw result.reason;
  }
}

/** Everything `rt` holds that needs closing. */
function holdings(rt: Runtime): Set<Closable> {
  const held = new Set<Closable>(rt.services.values());
  if (rt.limitStore) held.add(rt.limitStore);
  const { jwt, apiKey } = rt.authenticators;
  if (jwt) held.add(jwt);
  if (apiKey) held.add(apiKey);
  return held;
}

/**
 * Closes what `rt` holds and `keep` does not (see the module comment). Services let their
 * in-flight requests finish before their pools close.
 */
export async function closeRuntime(rt: Runtime, keep: Runtime | null = null): Promise<void> {
  const kept = keep ? holdings(keep) : new Set<Closable>();
  const drop = <T extends Closable>(r: T | null): r is T => r !== null && !kept.has(r);
  await Promise.all([...rt.services.values()].filter(drop).map((s) => s.close()));
  if (drop(rt.limitStore)) await rt.limitStore.close();
  const { jwt, apiKey } = rt.authenticators;
  await closeAuthenticators({
    jwt: drop(jwt) ? jwt : null,
    apiKey: drop(apiKey) ? apiKey : null,
    mtls: null,
  });
  // stage instances belong to one runtime: never taken over
  await Promise.all(rt.stages.map((s) => s.close?.()));
}

/**
 * The `/readyz` checks of what `rt` uses, each reported by its capability: the rate-limit
 * store, then the authenticators (in that order: the verbose answer lists them so).
 */
export function runtimeReadiness(rt: Runtime): Record<string, boolean | 'degraded'> {
  const checks: Record<string, boolean | 'degraded'> = {};
  if (rt.limitStore !== null) Object.assign(checks, rt.limitStore.readiness());
  for (const a of [rt.authenticators.jwt, rt.authenticators.apiKey]) {
    if (a?.readiness !== undefined) Object.assign(checks, a.readiness(rt.config.routes));
  }
  return checks;
}
