/**
 * The admin `/keys` endpoints (behind the admin token, checked by the admin server):
 *   POST   /keys              {name, tier, roles?, expiresAt?} → 201 {id, key, ...} (key shown once)
 *   GET    /keys              → {keys: [...]}
 *   GET    /keys/:id          → the key's record (never the key or its hash)
 *   DELETE /keys/:id          → revoked now; every instance refuses it within 1 s
 *   POST   /keys/:id/rotate   {grace?} → 201 the new key; the old one valid for `grace` (default 24h);
 *                             409 key_revoked | key_rotated | key_expired for a key that is not active
 * The repository is opened on first use from the running config's `database`. Instants (now,
 * revocation, grace, expiry checks) are the database's, not this instance's clock.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { GatewayConfig } from '../config/schema.js';
import { problem, type Problem } from '../problems/registry.js';
import { ID_PATTERN } from '../auth/api-keys/format.js';
import { createKey, rotateKey, viewOf } from '../auth/api-keys/manage.js';
import { checkExpiresAt, checkLifetime, checkNewKey, KeyInputError } from '../auth/api-keys/issue.js';
import { openKeyRepository, type DatabaseSettings, type KeyRepository } from '../stores/database.js';
import type { Logger } from '../observability/logger.js';

export type AdminReply = {
  json(status: number, body: unknown): void;
  problem(p: Problem): void;
};

export type KeysAdmin = {
  /** true when the path is one of the `/keys` endpoints (the request is then answered) */
  handle(req: IncomingMessage, res: ServerResponse, path: string, reply: AdminReply): boolean;
  close(): Promise<void>;
};

const MAX_BODY = 16 * 1024;
const DEFAULT_GRACE = 86_400_000;

class BadRequest extends Error {}

export function createKeysAdmin(
  config: () => GatewayConfig,
  logger: Logger,
  /** told of a revocation made here (the local cache; other instances hear the broadcast) */
  onRevoked: (id: string) => void = () => undefined,
): KeysAdmin {
  let open: { key: string; repo: Promise<KeyRepository> } | null = null;

  const repository = async (db: DatabaseSettings): Promise<KeyRepository> => {
    const key = db.url ?? `file:${db.file}`;
    if (open === null || open.key !== key) {
      const previous = open;
      const repo = openKeyRepository(db).then(async (r) => {
        await r.migrate();
        return r;
      });
      // a failed open is retried on the next request
      repo.catch(() => {
        if (open?.repo === repo) open = null;
      });
      open = { key, repo };
      void previous?.repo.then((r) => r.close()).catch(() => undefined);
    }
    return open.repo;
  };

  const run = async (req: IncomingMessage, path: string, reply: AdminReply): Promise<void> => {
    const cfg = config();
    const secret = cfg.auth?.apiKey?.secret ?? '';
    if (secret === '') {
      return reply.problem(
        problem('api_keys_unavailable', 'auth.apiKey is not configured: keys cannot be issued'),
      );
    }
    const parts = path.split('/').filter((p) => p !== ''); // ['keys', id?, 'rotate'?]
    const id = parts[1];
    if (id !== undefined && !ID_PATTERN.test(id)) return reply.problem(problem('not_found', 'no such key'));
    const method = req.method ?? 'GET';
    const repo = await repository(cfg.database);

    if (parts.length === 1 && method === 'POST') {
      const body = await readJson(req);
      const fields = api(() =>
        checkNewKey({ name: body.name, tier: body.tier, roles: body.roles ?? [] }, cfg),
      );
      const expiresAt =
        body.expiresAt === undefined || body.expiresAt === null
          ? null
          : await checkExpiresAt(body.expiresAt, async () => (await repo.now()).getTime()).catch((err) => {
              throw asBadRequest(err);
            });
      const { key, record } = await createKey(repo, secret, { ...fields, expiresAt });
      return reply.json(201, { ...record, key });
    }
    if (parts.length === 1 && method === 'GET') {
      return reply.json(200, { keys: (await repo.list()).map(viewOf) });
    }
    if (parts.length === 2 && id !== undefined && (method === 'GET' || method === 'DELETE')) {
      const found = method === 'GET' ? await repo.get(id) : await repo.revoke(id);
      if (found === null) return reply.problem(problem('not_found', 'no such key'));
      if (method === 'DELETE') onRevoked(id);
      return reply.json(200, viewOf(found));
    }
    if (parts.length === 3 && id !== undefined && parts[2] === 'rotate' && method === 'POST') {
      const body = await readJson(req, true);
      const grace = body.grace === undefined ? DEFAULT_GRACE : api(() => checkLifetime(body.grace));
      const rotated = await rotateKey(repo, secret, id, grace);
      if (rotated.kind === 'not_found') return reply.problem(problem('not_found', 'no such key'));
      if (rotated.kind === 'refused') return reply.problem(problem(`key_${rotated.reason}`, rotated.message));
      onRevoked(id);
      return reply.json(201, { ...rotated.record, key: rotated.key, previous: rotated.previous });
    }
    const known = parts.length === 1 || parts.length === 2 || (parts.length === 3 && parts[2] === 'rotate');
    return reply.problem(
      known
        ? problem('method_not_allowed', `${method} is not allowed here`)
        : problem('not_found', `no admin endpoint ${path}`),
    );
  };

  return {
    handle(req, _res, path, reply) {
      if (path !== '/keys' && !path.startsWith('/keys/')) return false;
      run(req, path, reply).catch((err: unknown) => {
        if (err instanceof BadRequest) return reply.problem(problem('bad_request', err.message));
        logger.warn(
          { err: err instanceof Error ? err.message : String(err) },
          'admin /keys: key store error',
        );
        reply.problem(problem('store_unavailable', 'the key store is unavailable', ['retry-after', '1']));
      });
      return true;
    },
    async close() {
      const current = open;
      open = null;
      if (current) await current.repo.then((r) => r.close()).catch(() => undefined);
    },
  };
}

/** Runs a check of `issue.ts`, a refusal becoming a 400 `bad_request`. */
function api<T>(check: () => T): T {
  try {
    return check();
  } catch (err) {
    throw asBadRequest(err);
  }
}

function asBadRequest(err: unknown): unknown {
  return err instanceof KeyInputError ? new BadRequest(apiMessage(err)) : err;
}

/**
 * A refused field as the API words it: named as in the JSON body, without the configured names,
 * and in its own words where the body differs from the CLI's flags (`roles` is an array; `grace`
 * is the only lifetime the API takes, an expiry being an instant).
 */
function apiMessage(err: KeyInputError): string {
  if (err.field === 'roles' && err.reason === 'malformed') return 'roles: an array of role names';
  if (err.field === 'lifetime') {
    return err.reason === 'malformed' ? 'grace: a duration such as 30m or 24h' : 'grace: between 0 and 3650d';
  }
  return `${err.field}: ${err.message}`;
}

async function readJson(req: IncomingMessage, emptyOk = false): Promise<Record<string, unknown>> {
  const type = req.headers['content-type'] ?? '';
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new BadRequest('body too large');
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '' && emptyOk) return {};
  if (!/^application\/json\b/i.test(type)) throw new BadRequest('the body must be application/json');
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new BadRequest('the body is not valid JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new BadRequest('the body must be a JSON object');
  return body as Record<string, unknown>;
}
