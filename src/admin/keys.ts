/**
 * The key store as the admin `/keys` endpoints use it (endpoints/keys.ts): the repository,
 * opened on first use from the running config's `database` (and again when that changes), and
 * what to do once a key changed here (the local cache drops it; other instances hear the
 * database's broadcast). Instants (now, revocation, grace, expiry checks) are the database's.
 */
import type { GatewayConfig } from '../config/schema.js';
import { problem } from '../problems/registry.js';
import { openKeyRepository, type DatabaseSettings, type KeyRepository } from '../stores/database.js';
import { AdminProblem } from './route-table.js';

export type KeysAdmin = {
  /** the repository and the server secret; a 409/503 problem when keys cannot be managed */
  open(): Promise<{ repo: KeyRepository; secret: string; config: GatewayConfig }>;
  /** a key was revoked, rotated or edited here: this process's cache must re-read it */
  changed(id: string): void;
  close(): Promise<void>;
};

export function createKeysAdmin(
  config: () => GatewayConfig,
  /** told of a change made here (the local cache; other instances hear the broadcast) */
  onChanged: (id: string) => void = () => undefined,
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

  return {
    async open() {
      const cfg = config();
      const secret = cfg.auth?.apiKey?.secret ?? '';
      if (secret === '') {
        throw new AdminProblem(
          problem('api_keys_unavailable', 'auth.apiKey is not configured: keys cannot be issued'),
        );
      }
      return { repo: await repository(cfg.database), secret, config: cfg };
    },
    changed: onChanged,
    async close() {
      const current = open;
      open = null;
      if (current) await current.repo.then((r) => r.close()).catch(() => undefined);
    },
  };
}
