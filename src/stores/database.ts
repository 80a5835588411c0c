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
import type { MigrationReport } from './migrations.js';

export type ApiKeyRecord = {
  readonly id: string;
  readonly name: string;
  readonly tier: string;
  readonly roles: readonly string[];
  /** HMAC-SHA-256(server secret, full key), hex; never the key */
  readonly hash: string;
  readonly createdAt: Date;
  readonly expiresAt: Date | null;
  /** revoked from this instant on (a rotation sets it in the future: the grace period) */
  readonly revokedAt: Date | null;
  readonly lastUsedAt: Date | null;
};

export type NewApiKey = {
  readonly id: string;
  readonly name: string;
  readonly tier: string;
  readonly roles: readonly string[];
  readonly hash: string;
  /** absent: the database's clock (tests set it to order keys) */
  readonly createdAt?: Date;
  /** an absolute expiry; null or absent: none (unless `lifetimeMs`) */
  readonly expiresAt?: Date | null;
  /** expires this long after the database's `now`; wins over `expiresAt` */
  readonly lifetimeMs?: number;
};

/** What one read found, with the database's clock at the read (ms since the epoch). */
export type KeyReads = { readonly records: readonly ApiKeyRecord[]; readonly dbTime: number };

/** A rotation, decided and applied in one transaction (concurrent rotations make one new key). */
export type RotationResult =
  | { readonly kind: 'rotated'; readonly previous: ApiKeyRecord; readonly created: ApiKeyRecord }
  | { readonly kind: 'not_found' }
  /** already revoked, or already rotated (`at` in the future: the end of its grace period) */
  | { readonly kind: 'revoked'; readonly at: Date; readonly dbTime: number }
  | { readonly kind: 'expired'; readonly at: Date };

/** The revocation broadcast, as an authenticator hears it. */
export type RevocationWatcher = {
  /** this key was revoked or rotated: re-read it before trusting it again */
  revoked(id: string): void;
  /** notifications may have been missed (the listening connection was lost or replaced) */
  reset(): void;
  /** every notification sent more than `ageMs` ago has been delivered (a heartbeat came back) */
  alive(ageMs: number): void;
  /** the listening connection is being replaced (already announced by `reset`) */
  lost(reason: string): void;
};

export interface KeyRepository {
  readonly kind: 'postgres' | 'sqlite';
  /**
   * Creates or upgrades the schema; idempotent, safe to run concurrently. Resolves only when the
   * tables are in place, else rejects (a SchemaError when a person must act).
   */
  migrate(): Promise<void>;
  /** stores a new key; returns it as stored (with the database's instants) */
  insert(key: NewApiKey): Promise<ApiKeyRecord>;
  get(id: string): Promise<ApiKeyRecord | null>;
  /** the records of these ids (unknown ids are absent), with the database's clock */
  readMany(ids: readonly string[]): Promise<KeyReads>;
  /** every key, newest first */
  list(): Promise<ApiKeyRecord[]>;
  /** the database's clock */
  now(): Promise<Date>;
  /**
   * Revokes now (the database's now); an earlier existing revocation is kept (revoking during a
   * grace period ends it). Returns the updated record, null for an unknown id.
   */
  revoke(id: string): Promise<ApiKeyRecord | null>;
  /**
   * Replaces an active key, in one transaction: a new key (`replacement`: its id and hash) with
   * the old one's name, tier, roles and expiry, and the old one revoked `graceMs` from now.
   * A revoked, already rotated or expired key is refused.
   */
  rotate(id: string, replacement: { id: string; hash: string }, graceMs: number): Promise<RotationResult>;
  /** records last-used instants (the latest wins); batched by the caller */
  touch(used: ReadonlyMap<string, Date>): Promise<void>;
  /** revocation broadcast between instances (PostgreSQL LISTEN/NOTIFY); absent: one instance */
  watchRevocations?(watcher: RevocationWatcher): void;
  close(): Promise<void>;
}

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
function driverError(err: unknown, setting: string, driver: string): unknown {
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
