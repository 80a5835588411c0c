/**
 * `/keys`: issue, list (paged, filtered), read, edit, revoke and rotate API keys. Revocations,
 * rotations and edits are broadcast by the key store to every instance (PostgreSQL
 * LISTEN/NOTIFY), which re-reads the key before trusting it again: within the revocation delay.
 */
import { Type } from '@sinclair/typebox';
import { createKey, rotateKey, viewOf } from '../../auth/api-keys/manage.js';
import { checkExpiresAt, checkLifetime, checkNewKey, KeyInputError } from '../../auth/api-keys/issue.js';
import { problem } from '../../problems/registry.js';
import type { KeyPosition, KeyRepository } from '../../stores/database.js';
import type { AdminContext } from '../context.js';
import { AdminProblem, defineRoute, ok, type AdminAnswer } from '../route-table.js';
import { IssuedKey, KeyIdParams, KeyView } from '../schemas.js';

const route = defineRoute<AdminContext>();
const DEFAULT_GRACE = 86_400_000;
export const MAX_PAGE = 500;

const notFound = () => new AdminProblem(problem('not_found', 'no such key'));

/** A refusal of issue.ts as a 400 naming the field as the JSON body does. */
function bad(err: unknown): unknown {
  if (!(err instanceof KeyInputError)) return err;
  let message = `${err.field}: ${err.message}`;
  if (err.field === 'roles' && err.reason === 'malformed') message = 'roles: an array of role names';
  if (err.field === 'lifetime')
    message =
      err.reason === 'malformed' ? 'grace: a duration such as 30m or 24h' : 'grace: between 0 and 3650d';
  return new AdminProblem(problem('bad_request', message));
}

function api<T>(check: () => T): T {
  try {
    return check();
  } catch (err) {
    throw bad(err);
  }
}

/** Runs `fn` on the key store; a store failure is a 503 (logged), a refusal stays what it is. */
async function withStore(
  ctx: AdminContext,
  fn: (s: Awaited<ReturnType<AdminContext['keys']['open']>>) => Promise<AdminAnswer>,
): Promise<AdminAnswer> {
  try {
    return await fn(await ctx.keys.open());
  } catch (err) {
    if (err instanceof AdminProblem) throw err;
    ctx
      .logger()
      .warn({ err: err instanceof Error ? err.message : String(err) }, 'admin /keys: key store error');
    throw new AdminProblem(
      problem('store_unavailable', 'the key store is unavailable', ['retry-after', '1']),
    );
  }
}

const expiry = (repo: KeyRepository, value: string | null | undefined): Promise<Date | null> =>
  value === undefined || value === null
    ? Promise.resolve(null)
    : checkExpiresAt(value, async () => (await repo.now()).getTime()).catch((err: unknown) => {
        throw bad(err);
      });

/** The cursor is opaque to clients: the position of the page's last key, base64url JSON. */
export function encodeCursor(p: KeyPosition): string {
  return Buffer.from(JSON.stringify([p.created, p.id])).toString('base64url');
}

export function decodeCursor(cursor: string): KeyPosition {
  const invalid = () => new AdminProblem(problem('bad_request', 'cursor: not a cursor this API returned'));
  if (!/^[A-Za-z0-9_-]{1,200}$/.test(cursor)) throw invalid();
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  if (
    !Array.isArray(value) ||
    value.length !== 2 ||
    typeof value[0] !== 'string' ||
    !/^-?\d{1,20}$/.test(value[0]) ||
    typeof value[1] !== 'string' ||
    !/^[0-9A-Za-z]{12}$/.test(value[1])
  )
    throw invalid();
  return { created: value[0], id: value[1] };
}

const Name = Type.String({ description: '1 to 100 letters, digits, spaces or _.@:-' });
const Tier = Type.String({
  description: 'a tier of `rateLimit.tiers` (any well-formed name when none are configured)',
});
const Roles = Type.Array(Type.String(), {
  description: 'role names of `rbac.roles`',
  errorMessage: 'an array of role names',
});
const ExpiresAt = Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
  description: 'an ISO 8601 instant in the future (within 10 years); null: never',
  errorMessage: 'an ISO 8601 instant in the future (within 10 years), or null',
});

export const keyRoutes = [
  route({
    method: 'POST',
    path: '/keys',
    operationId: 'createKey',
    tag: 'keys',
    summary: 'Issue an API key',
    description: 'The response is the only time the key is shown; only its keyed hash is stored.',
    mutating: true,
    body: Type.Object(
      { name: Name, tier: Tier, roles: Type.Optional(Roles), expiresAt: Type.Optional(ExpiresAt) },
      { additionalProperties: false },
    ),
    responses: { 201: { description: 'created; `key` is shown this once', schema: IssuedKey } },
    problems: ['api_keys_unavailable', 'store_unavailable'],
    handler: ({ body }, ctx) =>
      withStore(ctx, async ({ repo, secret, config }) => {
        const fields = api(() =>
          checkNewKey({ name: body.name, tier: body.tier, roles: body.roles ?? [] }, config),
        );
        const expiresAt = await expiry(repo, body.expiresAt);
        const { key, record } = await createKey(repo, secret, { ...fields, expiresAt });
        return { ...ok({ ...record, key }, 201), auditTarget: record.id };
      }),
  }),
  route({
    method: 'GET',
    path: '/keys',
    operationId: 'listKeys',
    tag: 'keys',
    summary: 'List keys, newest first, a page at a time',
    description:
      'Pass `next` of a page as `cursor` to get the following one; filters apply to every page and must stay the same.',
    mutating: false,
    query: Type.Object(
      {
        limit: Type.Optional(
          Type.Integer({
            minimum: 1,
            maximum: MAX_PAGE,
            default: 100,
            description: `keys per page (1 to ${MAX_PAGE})`,
          }),
        ),
        cursor: Type.Optional(
          Type.String({ maxLength: 200, description: 'the `next` of the previous page' }),
        ),
        tier: Type.Optional(Type.String({ maxLength: 100 })),
        status: Type.Optional(
          Type.Union([Type.Literal('active'), Type.Literal('revoked'), Type.Literal('expired')], {
            description: 'active (including a rotated key in its grace period), revoked, or expired',
          }),
        ),
        namePrefix: Type.Optional(
          Type.String({ maxLength: 100, description: 'names starting with this (case-sensitive)' }),
        ),
      },
      { additionalProperties: false },
    ),
    responses: {
      200: {
        description: 'one page; `next` is null on the last',
        schema: Type.Object(
          { keys: Type.Array(KeyView), next: Type.Union([Type.String(), Type.Null()]) },
          { additionalProperties: false },
        ),
      },
    },
    problems: ['api_keys_unavailable', 'store_unavailable'],
    handler: ({ query }, ctx) => {
      const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor);
      return withStore(ctx, async ({ repo }) => {
        const page = await repo.page({
          limit: query.limit ?? 100,
          after,
          tier: query.tier,
          status: query.status,
          namePrefix: query.namePrefix,
        });
        return ok({
          keys: page.records.map(viewOf),
          next: page.next === null ? null : encodeCursor(page.next),
        });
      });
    },
  }),
  route({
    method: 'GET',
    path: '/keys/{id}',
    operationId: 'getKey',
    tag: 'keys',
    summary: 'One key',
    mutating: false,
    params: KeyIdParams,
    responses: { 200: { description: 'the key', schema: KeyView } },
    problems: ['api_keys_unavailable', 'store_unavailable'],
    handler: ({ params }, ctx) =>
      withStore(ctx, async ({ repo }) => {
        const found = await repo.get(params.id);
        if (found === null) throw notFound();
        return ok(viewOf(found));
      }),
  }),
  route({
    method: 'PATCH',
    path: '/keys/{id}',
    operationId: 'updateKey',
    tag: 'keys',
    summary: "Edit a key's name, tier, roles or expiry (without rotating it)",
    description:
      'Every instance re-reads the key before it is used again (as fast as a revocation): a new tier or new roles apply to the next request.',
    mutating: true,
    params: KeyIdParams,
    body: Type.Object(
      {
        name: Type.Optional(Name),
        tier: Type.Optional(Tier),
        roles: Type.Optional(Roles),
        expiresAt: Type.Optional(ExpiresAt),
      },
      {
        additionalProperties: false,
        minProperties: 1,
        errorMessage: 'an object with at least one of name, tier, roles, expiresAt',
      },
    ),
    responses: { 200: { description: 'the key as changed', schema: KeyView } },
    problems: ['api_keys_unavailable', 'store_unavailable'],
    target: ({ params }) => (params as { id: string }).id,
    handler: ({ params, body }, ctx) =>
      withStore(ctx, async ({ repo, config }) => {
        const current = await repo.get(params.id);
        if (current === null) throw notFound();
        // the same checks as a new key's, on the fields that change
        const fields = api(() =>
          checkNewKey(
            {
              name: body.name ?? current.name,
              tier: body.tier ?? current.tier,
              roles: body.roles ?? [...current.roles],
            },
            {
              ...config,
              // a tier or role kept as it is is not refused for having left the config since
              rateLimit: body.tier === undefined ? { ...config.rateLimit, tiers: {} } : config.rateLimit,
              rbac: body.roles === undefined ? { ...config.rbac, roles: {} } : config.rbac,
            },
          ),
        );
        const expiresAt = body.expiresAt === undefined ? undefined : await expiry(repo, body.expiresAt);
        const updated = await repo.update(params.id, {
          ...(body.name === undefined ? {} : { name: fields.name }),
          ...(body.tier === undefined ? {} : { tier: fields.tier }),
          ...(body.roles === undefined ? {} : { roles: fields.roles }),
          ...(expiresAt === undefined ? {} : { expiresAt }),
        });
        if (updated === null) throw notFound();
        ctx.keys.changed(params.id);
        return ok(viewOf(updated));
      }),
  }),
  route({
    method: 'DELETE',
    path: '/keys/{id}',
    operationId: 'revokeKey',
    tag: 'keys',
    summary: 'Revoke a key (every instance refuses it within 1 s)',
    mutating: true,
    params: KeyIdParams,
    responses: { 200: { description: 'revoked', schema: KeyView } },
    problems: ['api_keys_unavailable', 'store_unavailable'],
    target: ({ params }) => (params as { id: string }).id,
    handler: ({ params }, ctx) =>
      withStore(ctx, async ({ repo }) => {
        const found = await repo.revoke(params.id);
        if (found === null) throw notFound();
        ctx.keys.changed(params.id);
        return ok(viewOf(found));
      }),
  }),
  route({
    method: 'POST',
    path: '/keys/{id}/rotate',
    operationId: 'rotateKey',
    tag: 'keys',
    summary: 'Issue a replacement; the old key stays valid for `grace` (default 24h)',
    mutating: true,
    params: KeyIdParams,
    body: Type.Object(
      {
        grace: Type.Optional(
          Type.Union([Type.String(), Type.Integer({ minimum: 0 })], {
            description: 'how long the old key stays valid: 0, 30m, 24h, 90d, or milliseconds',
            errorMessage: 'a duration such as 30m or 24h',
          }),
        ),
      },
      { additionalProperties: false },
    ),
    bodyOptional: true,
    responses: {
      201: {
        description: 'the new key (shown this once) and the old one as it now is',
        schema: Type.Object({ ...IssuedKey.properties, previous: KeyView }, { additionalProperties: false }),
      },
    },
    problems: ['api_keys_unavailable', 'store_unavailable', 'key_expired', 'key_revoked', 'key_rotated'],
    target: ({ params }) => (params as { id: string }).id,
    handler: ({ params, body }, ctx) =>
      withStore(ctx, async ({ repo, secret }) => {
        const grace = body.grace === undefined ? DEFAULT_GRACE : api(() => checkLifetime(body.grace));
        const rotated = await rotateKey(repo, secret, params.id, grace);
        if (rotated.kind === 'not_found') throw notFound();
        if (rotated.kind === 'refused')
          throw new AdminProblem(problem(`key_${rotated.reason}`, rotated.message));
        ctx.keys.changed(params.id);
        return {
          ...ok({ ...rotated.record, key: rotated.key, previous: rotated.previous }, 201),
          auditTarget: `${params.id} -> ${rotated.record.id}`,
        };
      }),
  }),
];
