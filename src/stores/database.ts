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
  KeyChanges,
  KeyPage,
  KeyPageQuery,
  KeyPosition,
  KeyStatus,
  KeyReads,
  KeyRepository,
  NewApiKey,
  RevocationWatcher,
  RotationResult,
} from './key-repository.js';

export type DatabaseSettings = { readonly url?: string | undefined; readonly file: string };

/** A real store: `runMigrations` is `migrate` saying what it did (for `gatehouse migrate`). */
export type StoredKeyRepository = KeyRepository & { runMigrations(): Promise<MigrationReport> };

/**
 * Each store's driver is loaded when that store is opened: pg only with `database.url`,
 * better-sqlite3 (a native module) only without it.
 */
export async function openKeyRepository(db: DatabaseSettings): Promise<StoredKeyRepository> {
  if (db.url !== undefined) {
    const { PostgresKeyRepository } = await import('./postgres-keys.js').catch((err: unknown) => {
      throw driverError(err, 'database.url', 'pg');
    });
    return new PostgresKeyRepository(db.url);
  }
  const { SqliteKeyRepository } = await import('./sqlite-keys.js').catch((err: unknown) => {
    throw driverError(err, 'database.file', 'better-sqlite3');
  });
  try {
    return new SqliteKeyRepository(db.file);
  } catch (err) {
    // better-sqlite3 loads its native part when the first database is opened
    throw driverError(err, 'database.file', 'better-sqlite3');
  }
}

/**
 * A driver that cannot be loaded (not installed, or a native module built for another Node.js)
 * is named with the setting that needs it; any other error (a file that cannot be opened) is
 * returned as it is.
 */
export function driverError(err: unknown, setting: string, driver: string): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : String(err);
  const unloadable =
    code === 'ERR_MODULE_NOT_FOUND' ||
    code === 'MODULE_NOT_FOUND' ||
    code === 'ERR_DLOPEN_FAILED' ||
    /NODE_MODULE_VERSION|Could not locate the bindings file/.test(message);
  if (!unloadable) return err;
  return new Error(
    `${setting}: the ${driver} package could not be loaded (${message}); ` +
      (driver === 'better-sqlite3'
        ? 'rebuild it for this Node.js (npm rebuild better-sqlite3), or use PostgreSQL (database.url)'
        : 'reinstall the dependencies'),
    { cause: err },
  );
}

/** Active at `now`, an instant of the database's clock (see `KeyReads.dbTime`). */
export function isActive(key: ApiKeyRecord, now: number): boolean {
  if (key.revokedAt !== null && key.revokedAt.getTime() <= now) return false;
  if (key.expiresAt !== null && key.expiresAt.getTime() <= now) return false;
  return true;
}
