/**
 * JWT revocation (auth/jwt/revocation.ts): one token by its `jti`, or every token of a subject
 * issued up to now. Effective on this instance when the call answers and on every other one
 * within a second (Redis pub/sub, then the periodic resync); the instant is Redis's clock, so
 * instances whose clocks disagree agree on which tokens it covers.
 */
import { Type } from '@sinclair/typebox';
import { MAX_ID_LENGTH, type RevocationResult, type TokenRevocations } from '../../auth/jwt/revocation.js';
import { problem } from '../../problems/registry.js';
import type { AdminContext } from '../context.js';
import { AdminProblem, defineRoute, ok } from '../route-table.js';
import { ConsumerParams } from '../schemas.js';

const route = defineRoute<AdminContext>();

/** an `exp` past this (year 5138) is not a token's */
const MAX_EXP_S = 1e11;

const Kept = {
  revokedAt: Type.String({ format: 'date-time', description: "the revocation's instant (Redis's clock)" }),
  keptUntil: Type.String({
    format: 'date-time',
    description: 'when the entry is dropped (no token it covers is valid by then)',
  }),
};

function denylistOf(ctx: AdminContext): TokenRevocations {
  const list = ctx.state.revocations?.list() ?? null;
  if (list === null)
    throw new AdminProblem(
      problem(
        'token_revocation_unavailable',
        'auth.jwt.revocation is not configured (or no route uses JWT): tokens cannot be revoked',
      ),
    );
  return list;
}

async function revoke(ctx: AdminContext, write: () => Promise<RevocationResult>): Promise<RevocationResult> {
  try {
    return await write();
  } catch (err) {
    ctx
      .logger()
      .warn({ err: err instanceof Error ? err.message : String(err) }, 'admin: token revocation failed');
    throw new AdminProblem(
      problem('store_unavailable', 'the denylist store (Redis) is unavailable; nothing was revoked', [
        'retry-after',
        '1',
      ]),
    );
  }
}

const iso = (ms: number): string => new Date(ms).toISOString();

export const revocationRoutes = [
  route({
    method: 'POST',
    path: '/tokens/revoke',
    operationId: 'revokeToken',
    tag: 'tokens',
    summary: 'Revoke one JWT by its `jti`, on every instance',
    description:
      "Give `exp` (the token's, in seconds since the epoch) to keep the entry only as long as the token lives; without it, the entry is kept for `auth.jwt.revocation.maxTokenLifetime`. A token without `jti` can only be revoked through its subject.",
    mutating: true,
    body: Type.Object(
      {
        jti: Type.String({ minLength: 1, maxLength: MAX_ID_LENGTH, description: "the token's `jti` claim" }),
        exp: Type.Optional(
          Type.Integer({ minimum: 1, maximum: MAX_EXP_S, description: "the token's `exp` claim (seconds)" }),
        ),
      },
      { additionalProperties: false },
    ),
    responses: {
      200: {
        description: 'revoked',
        schema: Type.Object({ jti: Type.String(), ...Kept }, { additionalProperties: false }),
      },
    },
    problems: ['token_revocation_unavailable', 'store_unavailable'],
    target: ({ body }) => `jti:${(body as { jti: string }).jti}`,
    handler: async ({ body }, ctx) => {
      const list = denylistOf(ctx);
      const result = await revoke(ctx, () => list.revokeJti(body.jti, body.exp ?? null));
      ctx.state.revocations?.revoked('jti');
      return ok({ jti: body.jti, revokedAt: iso(result.revokedAt), keptUntil: iso(result.keptUntil) });
    },
  }),
  route({
    method: 'POST',
    path: '/consumers/{id}/revoke-tokens',
    operationId: 'revokeConsumerTokens',
    tag: 'tokens',
    summary: 'Revoke every JWT of a subject (`sub`) issued up to now, on every instance',
    description:
      'Tokens whose `iat` is at or before `revokedAt` (whole seconds) are refused; one issued in a later second is accepted. Tokens without `iat` are refused while the entry lasts.',
    mutating: true,
    params: ConsumerParams,
    body: Type.Object({}, { additionalProperties: false }),
    bodyOptional: true,
    responses: {
      200: {
        description: 'revoked',
        schema: Type.Object({ consumer: Type.String(), ...Kept }, { additionalProperties: false }),
      },
    },
    problems: ['token_revocation_unavailable', 'store_unavailable'],
    target: ({ params }) => `sub:${(params as { id: string }).id}`,
    handler: async ({ params }, ctx) => {
      const list = denylistOf(ctx);
      const result = await revoke(ctx, () => list.revokeSubject(params.id));
      ctx.state.revocations?.revoked('subject');
      return ok({ consumer: params.id, revokedAt: iso(result.revokedAt), keptUntil: iso(result.keptUntil) });
    },
  }),
];
