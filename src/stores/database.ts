/**
 * The API key repository: one contract, two stores. PostgreSQL (`database.url`) for many
 * instances; embedded SQLite (`database.file`) for one. Both run the same migrations in
 * spirit (see each store) and the same contract tests (test/integration/api-keys-repository).
 *
 * Every instant is taken from the database's clock (PostgreSQL `now()`; for SQLite, the one
 * host's clock), never from the caller's: a CLI or an instance whose clock is off does not move a
 * revocation, an expiry or a grace period. Readers get the database's clock with what they read
 * (`KeyReads.dbTime`) and compare against that, not against their own clock.
 */
import type { ApiKeyRecord, KeyRepository } from './key-repository.js';
import type { MigrationReport } from './migrations.js';

export type {
  ApiKeyRecord,
  KeyReads,
  KeyRepository,
  NewApiKey,
  RevocationWatcher,
  RotationResult,
} from './key-repository.js';

export type DatabaseSettings = { readonly url?: string | undefined; readonly file: string };

/** A real store: `runMigrations` is `migrate` saying what it did (for `gatehouse migrate`). */
export type StoredKeyRepository = KeyRepository & { runMigrations(): Promise<MigrationReport> };

export async function openKeyRepository(db: DatabaseSettings): Promise<StoredKeyRepository> {
  if (db.url !== undefined) {
    const { PostgresKeyRepository } = await import('./postgres-keys.js');
    return new PostgresKeyRepository(db.url);
  }
  const { SqliteKeyRepository } = await import('./sqlite-keys.js');
  return new SqliteKeyRepository(db.file);
}

/** Active at `now`, an instant of the database's clock (see `KeyReads.dbTime`). */
export function isActive(key: ApiKeyRecord, now: number): boolean {
  if (key.revokedAt !== null && key.revokedAt.getTime() <= now) return false;
  if (key.expiresAt !== null && key.expiresAt.getTime() <= now) return false;
  return true;
}
