/**
 * The rate limiter of one runtime: the tiers compiled into plans, the store (Redis when
 * `redis` is configured, else memory) behind its failure policy, and how keys are made.
 */
import type { GatewayConfig } from '../config/schema.js';
import { parseDuration } from '../config/units.js';
import type { Logger } from '../observability/logger.js';
import { connectRedis } from '../stores/redis.js';
import type { Plan } from './decision.js';
import type { GatewayMetrics } from '../observability/metrics.js';
import { GuardedStore, type GuardMetrics } from './guarded-store.js';
import type { HeaderMode } from './headers.js';
import { MemoryStore, type MemoryStoreOptions } from './memory-store.js';
import { RedisStore } from './redis-store.js';
import type { RateLimitStore } from './store.js';

export type RateLimiter = {
  readonly store: GuardedStore;
  readonly plans: ReadonlyMap<string, Plan>;
  readonly headers: HeaderMode;
  readonly anonymousTier: string;
  readonly defaultTier: string;
  /** `<prefix>{rl:<tier>:<subject>}`: every key of one decision shares this hash tag */
  keyFor(tier: string, subject: string): string;
  /** waits (bounded) for the shared store; false = starting degraded */
  ready(): Promise<boolean>;
  close(): Promise<void>;
};

export function compilePlans(config: GatewayConfig['rateLimit']): Map<string, Plan> {
  const plans = new Map<string, Plan>();
  for (const [tier, spec] of Object.entries(config.tiers)) {
    plans.set(tier, {
      tier,
      limits: spec.limits.map((l) => ({
        requests: l.requests,
        windowMs: parseDuration(l.per.trim()),
        name: l.per.trim(),
      })),
      quota: spec.quota ? { requests: spec.quota.requests, per: spec.quota.per } : null,
    });
  }
  return plans;
}

/** Braces would end the hash tag early: they are escaped in subjects. */
const escapeSubject = (s: string) =>
  s.includes('{') || s.includes('}') ? s.replace(/[{}%]/g, (c) => `%${c.charCodeAt(0).toString(16)}`) : s;

export function createRateLimiter(
  config: GatewayConfig,
  logger: Logger,
  metrics: GatewayMetrics | null = null,
): RateLimiter | null {
  const used = config.routes.some((r) => effectiveRateLimit(r, config) !== 'off');
  if (!used) return null;
  const rl = config.rateLimit;
  if (!config.redis && config.workers !== 1) {
    logger.warn(
      { workers: config.workers },
      'rate limits without `redis` are counted per process: with several workers a client gets up to workers × the limit',
    );
  }
  let shared: RateLimitStore;
  let store: GuardedStore;
  if (config.redis) {
    // `redis.timeout` is enforced by the breaker (GuardedStore.bounded), which does not mistake
    // a busy event loop for a slow Redis; the client's own command timeout is only a backstop
    // that ends commands nobody waits for any more.
    const timeout = config.redis.timeout;
    const backstop = Math.max(4 * timeout, timeout + 1000);
    const client = connectRedis(
      config.redis.cluster
        ? { cluster: config.redis.cluster, timeout: backstop }
        : { url: config.redis.url ?? 'redis://127.0.0.1:6379', timeout: backstop },
    );
    shared = new RedisStore(client);
    // while degraded, the breaker probes with a PING
    store = new GuardedStore(shared, rl.onStoreError, logger, {
      probe: () => client.ping(),
      timeoutMs: timeout,
      ...guardMetrics(metrics, shared.kind, rl.onStoreError),
      ...(rl.onStoreError === 'local' ? { local: memoryOptions(rl, metrics, 'local') } : {}),
    });
    // connection errors are the breaker's business (it logs each transition once); without a
    // listener ioredis would print every failed reconnect attempt to stderr
    client.on('error', () => undefined);
    // reconnected: probe now rather than at the end of the open period
    client.on('ready', () => store.hint('available'));
  } else {
    shared = new MemoryStore(Date.now, memoryOptions(rl, metrics, 'memory'));
    store = new GuardedStore(
      shared,
      rl.onStoreError,
      logger,
      guardMetrics(metrics, 'memory', rl.onStoreError),
    );
  }
  const prefix = rl.keyPrefix;
  return {
    store,
    plans: compilePlans(rl),
    headers: rl.headers,
    anonymousTier: rl.anonymousTier,
    defaultTier: rl.defaultTier,
    keyFor: (tier, subject) => `${prefix}{rl:${tier}:${escapeSubject(subject)}}`,
    ready: async () => {
      const ok = await shared.ready(2000);
      // starting degraded: the policy applies (and /readyz reports it) until a probe succeeds
      if (!ok) store.hint('unavailable', 'not reachable at start');
      return ok;
    },
    close: () => store.close(),
  };
}

/** The in-process counters' bound, and their evictions counted by role (`memory` or `local`). */
function memoryOptions(
  rl: GatewayConfig['rateLimit'],
  metrics: GatewayMetrics | null,
  role: 'memory' | 'local',
): MemoryStoreOptions {
  const evictions = metrics?.memoryEvictions.labels(role);
  evictions?.inc(0);
  return {
    maxEntries: rl.memory.maxEntries,
    ...(evictions ? { onEvict: () => evictions.inc() } : {}),
  };
}

function guardMetrics(
  metrics: GatewayMetrics | null,
  store: string,
  policy: string,
): { metrics?: GuardMetrics } {
  if (metrics === null) return {};
  const errors = metrics.storeErrors.labels(store);
  const degraded = metrics.degradedDecisions.labels(store, policy);
  const gauge = metrics.storeDegraded.labels(store);
  gauge.set(0);
  return {
    metrics: {
      storeError: () => errors.inc(),
      degradedDecision: () => degraded.inc(),
      degraded: (on) => gauge.set(on ? 1 : 0),
    },
  };
}

/**
 * A route's rate limiting: as configured, else (SPEC) `tier` when the route has `auth` and tiers
 * are defined, otherwise `off`.
 */
export function effectiveRateLimit(
  route: GatewayConfig['routes'][number],
  config: GatewayConfig,
): 'tier' | 'ip' | 'off' {
  if (route.rateLimit !== undefined) return route.rateLimit;
  return (route.auth?.length ?? 0) > 0 && Object.keys(config.rateLimit.tiers).length > 0 ? 'tier' : 'off';
}
