/**
 * The rate limiter of one runtime: the tiers compiled into plans and how keys are made, over a
 * store (Redis when `redis` is configured, else memory) behind its failure policy. The store is
 * built separately (createLimitStore): it holds the counters and the connection, so a reload
 * whose store settings did not change hands it to the new runtime instead of building another.
 */
import { isDeepStrictEqual } from 'node:util';
import type { GatewayConfig } from '../config/schema.js';
import type { Logger } from '../observability/logger.js';
import { connectRedis } from '../stores/redis.js';
import { routeLimitSpec, type RouteLimitSpec } from './config.js';
import type { Plan } from './decision.js';
import type { GatewayMetrics } from '../observability/metrics.js';
import { GuardedStore, type GuardMetrics } from './guarded-store.js';
import type { HeaderMode } from './headers.js';
import { MemoryStore, type MemoryStoreOptions } from './memory-store.js';
import { RedisStore } from './redis-store.js';
import type { RateLimitStore } from './store.js';
import { ipSubject, rateLimitKey } from './subject.js';

export type RateLimiter = {
  readonly store: GuardedStore;
  readonly plans: ReadonlyMap<string, Plan>;
  readonly headers: HeaderMode;
  readonly anonymousTier: string;
  readonly defaultTier: string;
  /** `<prefix>{rl:<tier>:<subject>}`: every key of one decision shares this hash tag */
  keyFor(tier: string, subject: string): string;
  /** `ip:<IPv4>` or `ip:<IPv6 network>/<rateLimit.ipv6Prefix>` (subject.ts) */
  ipSubject(ip: string): string;
  /** `rateLimit.unauthenticated`: failed authentications per client address (null: none) */
  readonly unauthenticated: Plan | null;
};

/**
 * The counters and their connection (memory, or a Redis client + its breaker). Owned by the
 * runtime that built it or took it over; closed once, by the last runtime that holds it.
 */
export type LimitStore = {
  readonly guarded: GuardedStore;
  /** waits (bounded) for the shared store; false = starting degraded */
  ready(): Promise<boolean>;
  /** `/readyz`: a degraded store is still ready, unless the policy is to refuse meanwhile */
  readiness(): { rateLimitStore: boolean };
  close(): Promise<void>;
};

export function compilePlans(config: GatewayConfig['rateLimit']): Map<string, Plan> {
  const plans = new Map<string, Plan>();
  for (const [tier, spec] of Object.entries(config.tiers)) plans.set(tier, compilePlan(tier, spec));
  return plans;
}

type TierSpec = GatewayConfig['rateLimit']['tiers'][string];

export function compilePlan(tier: string, spec: Pick<TierSpec, 'limits' | 'quota'>): Plan {
  return {
    tier,
    limits: spec.limits.map((l) => ({ requests: l.requests, windowMs: l.per.ms, name: l.per.name })),
    quota: spec.quota ? { requests: spec.quota.requests, per: spec.quota.per } : null,
  };
}

/**
 * The counters of `rateLimit.unauthenticated` are kept under this tier name, which no
 * configured tier can have (tier names start with a letter or digit).
 */
export const UNAUTHENTICATED_TIER = '~unauthenticated';

/**
 * Whether any route of `config` is rate limited, or limits failed authentications (else no
 * limiter and no store are built).
 */
export function rateLimitUsed(config: GatewayConfig): boolean {
  return config.routes.some(
    (r) =>
      effectiveRateLimit(r, config) !== 'off' ||
      (config.rateLimit.unauthenticated !== undefined && (r.auth?.length ?? 0) > 0),
  );
}

/**
 * Whether a store built for `before` serves `after` as well: same `redis` settings, failure
 * policy and key prefix. Tiers, limits and headers are the plans', compiled per runtime.
 */
export function sameLimitStore(before: GatewayConfig, after: GatewayConfig): boolean {
  return (
    isDeepStrictEqual(before.redis, after.redis) &&
    before.rateLimit.onStoreError === after.rateLimit.onStoreError &&
    before.rateLimit.keyPrefix === after.rateLimit.keyPrefix
  );
}

export function createRateLimiter(config: GatewayConfig, store: LimitStore): RateLimiter {
  const rl = config.rateLimit;
  const prefix = rl.keyPrefix;
  return {
    store: store.guarded,
    plans: compilePlans(rl),
    headers: rl.headers,
    anonymousTier: rl.anonymousTier,
    defaultTier: rl.defaultTier,
    keyFor: (tier, subject) => rateLimitKey(prefix, tier, subject),
    ipSubject: (ip) => ipSubject(ip, rl.ipv6Prefix),
    unauthenticated: rl.unauthenticated ? compilePlan(UNAUTHENTICATED_TIER, rl.unauthenticated) : null,
  };
}

export function createLimitStore(
  config: GatewayConfig,
  logger: Logger,
  metrics: GatewayMetrics | null = null,
): LimitStore {
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
    // A command Redis runs later than `late` after it was sent counts nothing (the script's
    // deadline); one that ran in time is answered within twice that, or given up by the client.
    // A shard's first calls (cold connections, a fleet starting at once) may take `late` too.
    const late = Math.max(4 * timeout, timeout + 1000);
    const client = connectRedis(
      config.redis.cluster
        ? { cluster: config.redis.cluster, timeout: 2 * late }
        : { url: config.redis.url ?? 'redis://127.0.0.1:6379', timeout: 2 * late },
    );
    const redisStore = new RedisStore(client, { expireAfterMs: late });
    shared = redisStore;
    // while degraded, the breaker probes each failed shard with a read of one of its keys
    store = new GuardedStore(shared, rl.onStoreError, logger, {
      probe: (key) => redisStore.probe(key),
      timeoutMs: timeout,
      coldTimeoutMs: late,
      ...guardMetrics(metrics, shared.kind, rl.onStoreError),
      ...(rl.onStoreError === 'local' ? { local: memoryOptions(rl, metrics, 'local') } : {}),
    });
    // connection errors are the breaker's business (it logs each transition once); without a
    // listener ioredis would print every failed reconnect attempt to stderr
    client.on('error', () => undefined);
    // reconnected, or a Cluster's slot map re-read (a failover is followed at once): probe now
    // rather than at the end of the open period
    client.on('ready', () => store.hint('available'));
    if (client.isCluster) client.on('refresh', () => store.hint('available'));
  } else {
    shared = new MemoryStore(Date.now, memoryOptions(rl, metrics, 'memory'));
    store = new GuardedStore(
      shared,
      rl.onStoreError,
      logger,
      guardMetrics(metrics, 'memory', rl.onStoreError),
    );
  }
  return {
    guarded: store,
    ready: async () => {
      const ok = await shared.ready(2000);
      // starting degraded: the policy applies (and /readyz reports it) until a probe succeeds
      if (!ok) store.hint('unavailable', 'not reachable at start');
      return ok;
    },
    readiness: () => ({ rateLimitStore: !store.isUnavailable || store.policy !== 'closed' }),
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
 * A route's rate limiting: as configured, else `tier` when the route has `auth` and tiers are
 * defined, otherwise `off` (docs/rate-limiting.md). A route's own key, limits or mode come as a
 * RouteLimitSpec (what equals a short form is that form).
 */
export function effectiveRateLimit(
  route: GatewayConfig['routes'][number],
  config: GatewayConfig,
): 'tier' | 'ip' | 'off' | RouteLimitSpec {
  const own = route.rateLimit;
  if (typeof own === 'object') return routeLimitSpec(own);
  if (own !== undefined) return own;
  return (route.auth?.length ?? 0) > 0 && Object.keys(config.rateLimit.tiers).length > 0 ? 'tier' : 'off';
}
