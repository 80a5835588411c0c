/**
 * Rate limiting's config: the tiers (sliding-window limits and calendar quotas), the store's
 * failure policy, the headers, a route's `rateLimit`; and the checks that the tiers are sound and
 * that the tiers the routes need exist.
 */
import { Type, type StaticDecode } from '@sinclair/typebox';
import { NamedDuration, Section, strict, type ConfigCheck, type PathSegment } from '../config/fields.js';

const TIER_NAME = '^[A-Za-z0-9][A-Za-z0-9_.-]*$';

export const LimitSchema = Type.Object(
  {
    requests: Type.Integer({ minimum: 1, description: 'requests allowed per window' }),
    per: NamedDuration({
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

/** A route's `rateLimit`. */
export const RouteRateLimit = Type.Union([Type.Literal('tier'), Type.Literal('ip'), Type.Literal('off')], {
  description:
    'tier: by consumer and its tier (anonymous callers by IP, with rateLimit.anonymousTier); ip: by client IP with rateLimit.anonymousTier; off (default)',
});

export type RateLimitConfig = StaticDecode<typeof RateLimitSchema>;
export type TierConfig = StaticDecode<typeof TierSchema>;

/** A route's `auth`, read only for its length (the auth section owns the field). */
const AnyAuth = Type.Array(Type.String());

/** Every tier limits something, one limit per window of whole seconds; the tiers used exist. */
export const checkRateLimit: ConfigCheck = (config, report) => {
  const rateLimit = config.valid(RateLimitSchema, 'rateLimit');
  if (!rateLimit) return;
  const checkTier = (where: PathSegment[], tier: Pick<TierConfig, 'limits' | 'quota'>) => {
    if (tier.limits.length === 0 && tier.quota === undefined) report(where, 'has neither limits nor a quota');
    const seen = new Map<number, number>();
    tier.limits.forEach(({ per }, i) => {
      const at = [...where, 'limits', i, 'per'];
      if (per.ms < 1000 || per.ms % 1000 !== 0)
        report(at, `must be a whole number of seconds, at least "1s" (got "${per.name}")`);
      const other = seen.get(per.ms);
      // two limits over one window would share one counter
      if (other !== undefined) report(at, `repeats the window of limits[${other}]: use one limit per window`);
      else seen.set(per.ms, i);
    });
  };
  for (const [name, tier] of Object.entries(rateLimit.tiers)) checkTier(['rateLimit', 'tiers', name], tier);
  if (rateLimit.unauthenticated) checkTier(['rateLimit', 'unauthenticated'], rateLimit.unauthenticated);

  const tierNames = Object.keys(rateLimit.tiers);
  const known = (tier: string) => Object.hasOwn(rateLimit.tiers, tier);
  const list = tierNames.length > 0 ? tierNames.join(', ') : 'none';
  let needsAnonymous: number | null = null;
  let needsDefault: number | null = null;
  let defaultedRoute = false;
  const count = config.length('routes');
  for (let i = 0; i < count; i++) {
    const mode = config.valid(RouteRateLimit, 'routes', i, 'rateLimit');
    const auth = config.valid(AnyAuth, 'routes', i, 'auth');
    if (mode === 'ip' || mode === 'tier') needsAnonymous ??= i;
    // a route with auth and no rateLimit is limited by tier (effectiveRateLimit): its consumers
    // without a known tier get the default tier, which must exist or they would not be limited
    const byDefault = mode === undefined && (auth?.length ?? 0) > 0 && tierNames.length > 0;
    if (needsDefault === null && (mode === 'tier' || byDefault)) {
      needsDefault = i;
      defaultedRoute = byDefault;
    }
  }
  if (needsAnonymous !== null && !known(rateLimit.anonymousTier)) {
    report(
      ['rateLimit', 'anonymousTier'],
      `names an unknown tier "${rateLimit.anonymousTier}" (used by routes[${needsAnonymous}]; tiers: ${list})`,
    );
  }
  if (needsDefault !== null && !known(rateLimit.defaultTier)) {
    report(
      ['rateLimit', 'defaultTier'],
      `names an unknown tier "${rateLimit.defaultTier}" (used by routes[${needsDefault}]` +
        (defaultedRoute ? ', whose rateLimit is tier by default: it has auth' : '') +
        `; tiers: ${list})`,
    );
  }
};
