/**
 * Everything the data plane needs, compiled from one config: the router, the services with
 * their pools, each route's stage chain. Built once per config load; swapped whole on reload.
 */
import type { GatewayConfig } from '../config/schema.js';
import { compileChain } from '../pipeline/chain.js';
import type { CompiledRoute } from '../pipeline/route.js';
import { closeAuthenticators, createAuthenticators } from '../auth/index.js';
import type { SharedResources } from '../pipeline/stage.js';
import { STAGES } from '../pipeline/stages.js';
import { createRateLimiter } from '../ratelimit/limiter.js';
import { silentLogger, type Logger } from '../observability/logger.js';
import type { GatewayMetrics } from '../observability/metrics.js';
import { Tracing } from '../observability/tracing/index.js';
import { parsePattern } from '../router/pattern.js';
import { Router } from '../router/router.js';
import { TrustedProxies } from '../stages/real-ip/index.js';
import { createDiscovery } from '../upstream/discovery/index.js';
import { Service } from '../upstream/service.js';

export type Runtime = {
  readonly config: GatewayConfig;
  readonly router: Router<CompiledRoute>;
  readonly services: ReadonlyMap<string, Service>;
  readonly trustedProxies: TrustedProxies;
  readonly shared: SharedResources;
  /** trace context for every request (the gateway's, kept across reloads) */
  readonly tracing: Tracing;
};

export function compileRuntime(
  config: GatewayConfig,
  logger: Logger = silentLogger(),
  metrics: GatewayMetrics | null = null,
  tracing: Tracing = new Tracing(undefined, logger),
): Runtime {
  const shared: SharedResources = {
    rateLimiter: createRateLimiter(config, logger, metrics),
    authenticators: createAuthenticators(config, logger),
    metrics,
  };
  const services = new Map<string, Service>();
  for (const [name, svc] of Object.entries(config.services)) {
    const source = createDiscovery(name, svc, config.dns, logger);
    services.set(name, new Service(name, svc, { source, logger, metrics: metrics?.forService(name) }));
  }
  const specs = config.routes.map((route) => {
    const pattern = parsePattern(route.match.path);
    if (!pattern.ok) throw new Error(`routes "${route.name}": ${pattern.reason}`); // checked by the loader
    const service = services.get(route.service);
    if (!service) throw new Error(`routes "${route.name}": unknown service ${route.service}`);
    const compiled: CompiledRoute = {
      name: route.name,
      config: route,
      service,
      stripLength: route.stripPrefix ? route.stripPrefix.replace(/\/$/, '').length : 0,
      stages: compileChain(STAGES, route, config, shared),
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
    services,
    trustedProxies: new TrustedProxies(config.trustedProxies),
    shared,
    tracing,
  };
}

/** How long start and reload wait for the first DNS answers before going on without them. */
const DISCOVERY_READY_MS = 5000;

/** Resolves once every service's discovery answered once (bounded: a dead DNS never blocks). */
export async function readyServices(rt: Runtime): Promise<void> {
  await Promise.all([...rt.services.values()].map((s) => s.ready(DISCOVERY_READY_MS)));
}

export async function closeRuntime(rt: Runtime): Promise<void> {
  await Promise.all([...rt.services.values()].map((s) => s.close()));
  await rt.shared.rateLimiter?.close();
  await closeAuthenticators(rt.shared.authenticators);
}
