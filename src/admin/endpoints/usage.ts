/**
 * Usage against the rate limits: what a key or a consumer has used of each limit of its tier
 * (current window, remaining), read from the rate-limit store without counting; `DELETE` forgets
 * the counts (audited). Keys are counted as consumer `c:<key id>` in the key's tier; a consumer
 * authenticated by JWT (its `sub`) may be counted in any tier, so every tier is shown, or `tier`.
 */
import { Type } from '@sinclair/typebox';
import { problem } from '../../problems/registry.js';
import type { RateLimiter } from '../../ratelimit/limiter.js';
import { peekUsage, resetUsage } from '../../ratelimit/usage.js';
import type { AdminContext } from '../context.js';
import { AdminProblem, defineRoute, ok, type AdminAnswer } from '../route-table.js';
import { ConsumerParams, KeyIdParams } from '../schemas.js';

const route = defineRoute<AdminContext>();

const Limit = Type.Object(
  {
    name: Type.String({ description: 'the window as written (1m) or the quota period (day, month)' }),
    kind: Type.Union([Type.Literal('limit'), Type.Literal('quota')]),
    limit: Type.Integer(),
    windowSec: Type.Integer(),
    current: Type.Integer({ description: 'counted in the current fixed window or period' }),
    previous: Type.Integer({ description: 'counted in the previous fixed window (0 for a quota)' }),
    used: Type.Integer({ description: 'the sliding estimate of the last window, rounded down' }),
    remaining: Type.Integer(),
    resetSec: Type.Integer(),
  },
  { additionalProperties: false },
);
const Usage = Type.Object(
  {
    subject: Type.String({ description: 'whom the counters are kept for (`c:<id>`)' }),
    usage: Type.Array(
      Type.Object({ tier: Type.String(), limits: Type.Array(Limit) }, { additionalProperties: false }),
    ),
  },
  { additionalProperties: false },
);
const Reset = Type.Object(
  {
    subject: Type.String(),
    reset: Type.Array(Type.String(), { description: 'the tiers whose counters were forgotten' }),
  },
  { additionalProperties: false },
);
const TierQuery = Type.Object(
  { tier: Type.Optional(Type.String({ maxLength: 100, description: 'only this tier' })) },
  { additionalProperties: false },
);

function limiterOf(ctx: AdminContext): RateLimiter {
  const limiter = ctx.runtime().rateLimiter;
  if (limiter === null)
    throw new AdminProblem(problem('not_found', 'no route is rate limited: nothing is counted'));
  return limiter;
}

async function storeCall<T>(ctx: AdminContext, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof AdminProblem) throw err;
    ctx
      .logger()
      .warn({ err: err instanceof Error ? err.message : String(err) }, 'admin usage: rate-limit store error');
    throw new AdminProblem(
      problem('store_unavailable', 'the rate-limit store is unavailable', ['retry-after', '1']),
    );
  }
}

/** The tier a key is counted in: its own when configured, else the default (as the stage does). */
async function keyTier(ctx: AdminContext, limiter: RateLimiter, id: string): Promise<string> {
  const { repo } = await ctx.keys.open();
  const key = await storeCall(ctx, () => repo.get(id));
  if (key === null) throw new AdminProblem(problem('not_found', 'no such key'));
  return key.tier !== '' && limiter.plans.has(key.tier) ? key.tier : limiter.defaultTier;
}

function tiersOf(limiter: RateLimiter, tier: string | undefined): string[] {
  if (tier === undefined) return [...limiter.plans.keys()];
  if (!limiter.plans.has(tier)) throw new AdminProblem(problem('not_found', `no tier "${tier}"`));
  return [tier];
}

async function show(
  ctx: AdminContext,
  limiter: RateLimiter,
  subject: string,
  tiers: string[],
): Promise<AdminAnswer> {
  const usage = await storeCall(ctx, () => Promise.all(tiers.map((t) => peekUsage(limiter, t, subject))));
  return ok({ subject, usage: usage.map((u) => ({ tier: u.tier, limits: u.limits })) });
}

async function reset(
  ctx: AdminContext,
  limiter: RateLimiter,
  subject: string,
  tiers: string[],
): Promise<AdminAnswer> {
  await storeCall(ctx, () => Promise.all(tiers.map((t) => resetUsage(limiter, t, subject))));
  return ok({ subject, reset: tiers });
}

export const usageRoutes = [
  route({
    method: 'GET',
    path: '/keys/{id}/usage',
    operationId: 'getKeyUsage',
    tag: 'usage',
    summary: "A key's usage of each limit of its tier, and what remains",
    mutating: false,
    params: KeyIdParams,
    responses: { 200: { description: 'usage', schema: Usage } },
    problems: ['store_unavailable', 'api_keys_unavailable'],
    handler: async ({ params }, ctx) => {
      const limiter = limiterOf(ctx);
      return show(ctx, limiter, `c:${params.id}`, [await keyTier(ctx, limiter, params.id)]);
    },
  }),
  route({
    method: 'DELETE',
    path: '/keys/{id}/usage',
    operationId: 'resetKeyUsage',
    tag: 'usage',
    summary: "Forget a key's counters (its limits and quota start again from zero)",
    mutating: true,
    params: KeyIdParams,
    responses: { 200: { description: 'forgotten', schema: Reset } },
    problems: ['store_unavailable', 'api_keys_unavailable'],
    target: ({ params }) => (params as { id: string }).id,
    handler: async ({ params }, ctx) => {
      const limiter = limiterOf(ctx);
      return reset(ctx, limiter, `c:${params.id}`, [await keyTier(ctx, limiter, params.id)]);
    },
  }),
  route({
    method: 'GET',
    path: '/consumers/{id}/usage',
    operationId: 'getConsumerUsage',
    tag: 'usage',
    summary: "A consumer's usage in every tier (or `tier`), and what remains",
    mutating: false,
    params: ConsumerParams,
    query: TierQuery,
    responses: { 200: { description: 'usage', schema: Usage } },
    problems: ['store_unavailable'],
    handler: ({ params, query }, ctx) => {
      const limiter = limiterOf(ctx);
      return show(ctx, limiter, `c:${params.id}`, tiersOf(limiter, query.tier));
    },
  }),
  route({
    method: 'DELETE',
    path: '/consumers/{id}/usage',
    operationId: 'resetConsumerUsage',
    tag: 'usage',
    summary: "Forget a consumer's counters in every tier (or `tier`)",
    mutating: true,
    params: ConsumerParams,
    query: TierQuery,
    responses: { 200: { description: 'forgotten', schema: Reset } },
    problems: ['store_unavailable'],
    target: ({ params }) => (params as { id: string }).id,
    handler: ({ params, query }, ctx) => {
      const limiter = limiterOf(ctx);
      return reset(ctx, limiter, `c:${params.id}`, tiersOf(limiter, query.tier));
    },
  }),
];
