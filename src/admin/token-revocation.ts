/**
 * The admin endpoints of JWT revocation (behind the admin token, checked by the admin server):
 *   POST /tokens/revoke                 {jti, exp?} → 200 {jti, revokedAt, keptUntil}
 *   POST /consumers/:id/revoke-tokens   (no body, or {}) → 200 {consumer, revokedAt, keptUntil}:
 *                                       every token of subject `id` issued up to `revokedAt`
 * Both are effective on this instance when they answer and on every other one within a second
 * (auth/jwt/revocation.ts); the instant is Redis's clock. Each call is audited: one log line
 * with `audit: true`, the action and its target (a token id or a subject, never a token).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { MAX_ID_LENGTH, type TokenRevocations } from '../auth/jwt/revocation.js';
import type { Logger } from '../observability/logger.js';
import { problem } from '../problems/registry.js';
import type { AdminReply } from './keys.js';

export type TokenRevocationAdmin = {
  /** true when the path is one of these endpoints (the request is then answered) */
  handle(req: IncomingMessage, res: ServerResponse, path: string, reply: AdminReply): boolean;
};

export type RevokedKind = 'jti' | 'subject';

const MAX_BODY = 4096;
/** an `exp` past this (year 5138) is not a token's */
const MAX_EXP_S = 1e11;
const CONSUMER_PATH = /^\/consumers\/([^/]+)\/revoke-tokens$/;

class BadRequest extends Error {}

export function createTokenRevocationAdmin(
  /** the running runtime's denylist (null: not configured) */
  revocations: () => TokenRevocations | null,
  logger: Logger,
  /** counted: a revocation made through this instance */
  onRevoked: (kind: RevokedKind) => void = () => undefined,
): TokenRevocationAdmin {
  const audit = (fields: Record<string, unknown>, message: string) =>
    logger.info({ audit: true, ...fields }, message);

  const run = async (req: IncomingMessage, res: ServerResponse, path: string, reply: AdminReply) => {
    const requestId = res.getHeader('x-request-id');
    const list = revocations();
    if (list === null) {
      return reply.problem(
        problem(
          'token_revocation_unavailable',
          'auth.jwt.revocation is not configured (or no route uses JWT): tokens cannot be revoked',
        ),
      );
    }
    if (path === '/tokens/revoke') {
      const body = await readBody(req, ['jti', 'exp']);
      const jti = body.jti;
      if (typeof jti !== 'string' || jti.length === 0 || jti.length > MAX_ID_LENGTH)
        throw new BadRequest(`jti: a string of 1 to ${MAX_ID_LENGTH} characters`);
      const exp = body.exp;
      if (
        exp !== undefined &&
        (!Number.isInteger(exp) || (exp as number) <= 0 || (exp as number) > MAX_EXP_S)
      )
        throw new BadRequest("exp: the token's `exp`, in seconds since the epoch");
      const result = await list.revokeJti(jti, (exp as number | undefined) ?? null);
      onRevoked('jti');
      audit(
        { action: 'token.revoke', target: { jti }, requestId, revokedAt: iso(result.revokedAt) },
        'admin: token revoked',
      );
      return reply.json(200, { jti, revokedAt: iso(result.revokedAt), keptUntil: iso(result.keptUntil) });
    }
    const raw = CONSUMER_PATH.exec(path)?.[1] ?? '';
    let consumer: string;
    try {
      consumer = decodeURIComponent(raw);
    } catch {
      throw new BadRequest('the consumer id is not valid percent-encoding');
    }
    if (consumer.length === 0 || consumer.length > MAX_ID_LENGTH)
      throw new BadRequest(`the consumer id must be 1 to ${MAX_ID_LENGTH} characters`);
    await readBody(req, [], true);
    const result = await list.revokeSubject(consumer);
    onRevoked('subject');
    audit(
      { action: 'consumer.revoke-tokens', target: { consumer }, requestId, revokedAt: iso(result.revokedAt) },
      "admin: consumer's tokens revoked",
    );
    return reply.json(200, { consumer, revokedAt: iso(result.revokedAt), keptUntil: iso(result.keptUntil) });
  };

  return {
    handle(req, res, path, reply) {
      if (path !== '/tokens/revoke' && !CONSUMER_PATH.test(path)) return false;
      if (req.method !== 'POST') {
        reply.problem(problem('method_not_allowed', `${req.method} is not allowed here`));
        return true;
      }
      run(req, res, path, reply).catch((err: unknown) => {
        if (err instanceof BadRequest) return reply.problem(problem('bad_request', err.message));
        logger.warn(
          { err: err instanceof Error ? err.message : String(err) },
          'admin: token revocation failed: Redis unavailable',
        );
        reply.problem(
          problem('store_unavailable', 'the denylist store (Redis) is unavailable; nothing was revoked', [
            'retry-after',
            '1',
          ]),
        );
      });
      return true;
    },
  };
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** A JSON object with no field but `allowed`; empty allowed when `emptyOk`. */
async function readBody(
  req: IncomingMessage,
  allowed: readonly string[],
  emptyOk = false,
): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new BadRequest(`body too large (at most ${MAX_BODY} bytes)`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '' && emptyOk) return {};
  if (!/^application\/json\b/i.test(req.headers['content-type'] ?? ''))
    throw new BadRequest('the body must be application/json');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new BadRequest('the body is not valid JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new BadRequest('the body must be a JSON object');
  const unknown = Object.keys(body).filter((k) => !allowed.includes(k));
  if (unknown.length > 0)
    throw new BadRequest(
      `unknown field${unknown.length > 1 ? 's' : ''}: ${unknown
        .slice(0, 5)
        .map((k) => k.slice(0, 40))
        .join(', ')}`,
    );
  return body as Record<string, unknown>;
}
