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

/** The short forms of a route's `rateLimit`. */
export const RouteRateLimitMode = Type.Union(
  [Type.Literal('tier'), Type.Literal('ip'), Type.Literal('off')],
  {
    description:
      'tier: by consumer and its tier (anonymous callers by IP, with rateLimit.anonymousTier); ip: by client IP with rateLimit.anonymousTier; off (default)',
  },
);

/** A route's own key, limits and mode (docs/rate-limiting.md, "Route keys and limits"). */
export const RouteRateLimitPolicy = Type.Object(
  {
    key: Type.Optional(
      Type.String({
        pattern: '^(consumer|ip|route\\+consumer|header:.*)$',
        description:
          'who is counted: consumer (default; anonymous callers by client IP), ip (client IP), route+consumer (the consumer, with counters of this route only), header:NAME (the value of request header NAME, with counters of this route only; a request without it is counted by client IP)',
        errorMessage: 'must be "consumer", "ip", "route+consumer" or "header:" and a header name',
      }),
    ),
    limits: Type.Optional(
      Type.Array(LimitSchema, {
        minItems: 1,
        description:
          "this route's own limits in place of the tier's, counted for this route only (so a noisy route cannot use up the budget of the consumer's other routes)",
      }),
    ),
    mode: Type.Optional(
      Type.Union([Type.Literal('enforce'), Type.Literal('shadow')], {
        description:
          'enforce (default), or shadow: decide and count (gatehouse_ratelimit_decisions_total{result="would_reject"}, the access log\'s rateLimit), but refuse nothing and send no rate-limit headers; needs `limits`',
      }),
    ),
  },
  { ...strict, description: "a route's rate-limit key, its own limits and its mode" },
);

/** A route's `rateLimit`: a short form, or its own key, limits and mode. */
export const RouteRateLimit = Type.Union([RouteRateLimitMode, RouteRateLimitPolicy], {
  description:
    'tier | ip | off (default: tier on a route with auth when tiers are defined), or { key, limits, mode }',
  errorMessage:
    'must be "tier", "ip", "off", or { key, limits, mode } with key "consumer", "ip", "route+consumer" or "header:NAME" and mode "enforce" or "shadow"',
});

export type RouteRateLimitConfig = StaticDecode<typeof RouteRateLimit>;

/** A route's own rate limiting, normalised: the short forms are `tier` and `ip`. */
export type RouteLimitSpec = {
  /** what subject is counted; header: the lower-case header name */
  readonly key: 'consumer' | 'ip' | 'route+consumer' | { readonly header: string };
  /** own limits (counted for the route only), or null: the tier's */
  readonly limits: StaticDecode<typeof LimitSchema>[] | null;
  readonly shadow: boolean;
};

/**
 * The object form normalised: what is the same as a short form becomes it (`{ key: consumer }`
 * is `tier`, `{ key: ip }` is `ip`: same counters, same code path), the rest a RouteLimitSpec.
 */
export function routeLimitSpec(
  config: StaticDecode<typeof RouteRateLimitPolicy>,
): 'tier' | 'ip' | RouteLimitSpec {
  const key = config.key ?? 'consumer';
  const limits = config.limits ?? null;
  const shadow = config.mode === 'shadow';
  if (limits === null && !shadow && (key === 'consumer' || key === 'ip')) return key === 'ip' ? 'ip' : 'tier';
  return {
    key: key.startsWith('header:')
      ? { header: key.slice('header:'.length).toLowerCase() }
      : (key as RouteLimitSpec['key'] & string),
    limits,
    shadow,
  };
}

/** an HTTP field name (RFC 9110 token) */
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export type RateLimitConfig = StaticDecode<typeof RateLimitSchema>;
export type TierConfig = StaticDecode<typeof TierSchema>;

/**
 * Which tier a route's `rateLimit` needs: `tier` (the consumer's, or the default tier), `ip`
 * (the anonymous tier), or undefined (off, or its own limits).
 */
function tierModeOf(given: RouteRateLimitConfig | undefined): 'tier' | 'ip' | 'off' | undefined {
  if (typeof given !== 'object') return given;
  if (given.limits !== undefined) return 'off';
  const key = given.key ?? 'consumer';
  return key === 'consumer' || key === 'route+consumer' ? 'tier' : 'ip';
}

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

  const count0 = config.length('routes');
  for (let i = 0; i < count0; i++) {
    const policy = config.valid(RouteRateLimitPolicy, 'routes', i, 'rateLimit');
    if (policy === undefined) continue;
    const at = ['routes', i, 'rateLimit'];
    if (policy.key?.startsWith('header:')) {
      const name = policy.key.slice('header:'.length);
      if (name === '')
        report(
          [...at, 'key'],
          'names no header: write "header:" and a header name, such as "header:x-tenant"',
        );
      else if (!HEADER_NAME.test(name)) report([...at, 'key'], `"${name}" is not a header name`);
    }
    if (policy.mode === 'shadow' && policy.limits === undefined)
      report(
        [...at, 'mode'],
        "shadow needs the route's own `limits` to try out (a shadow tier limit would leave the route unlimited)",
      );
    if (policy.limits !== undefined) checkTier(at, { limits: policy.limits });
  }

  const tierNames = Object.keys(rateLimit.tiers);
  const known = (tier: string) => Object.hasOwn(rateLimit.tiers, tier);
  const list = tierNames.length > 0 ? tierNames.join(', ') : 'none';
  let needsAnonymous: number | null = null;
  let needsDefault: number | null = null;
  let defaultedRoute = false;
  const count = config.length('routes');
  for (let i = 0; i < count; i++) {
    const given = config.valid(RouteRateLimit, 'routes', i, 'rateLimit');
    const auth = config.valid(AnyAuth, 'routes', i, 'auth');
    const mode = tierModeOf(given);
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
