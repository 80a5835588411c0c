/**
 * The API key repository: one contract, two stores. PostgreSQL (`database.url`) for many
 * instances; embedded SQLite (`database.file`) for one. Both run the same migrations in
 * spirit (see each store) and the same contract tests (test/integration/api-keys-repository).
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

export type NewApiKey = Omit<ApiKeyRecord, 'lastUsedAt' | 'revokedAt'>;

export interface KeyRepository {
  readonly kind: 'postgres' | 'sqlite';
  /**
   * Creates or upgrades the schema; idempotent, safe to run concurrently. Resolves only when the
   * tables are in place, else rejects (a SchemaError when a person must act).
   */
  migrate(): Promise<void>;
  insert(key: NewApiKey): Promise<void>;
  get(id: string): Promise<ApiKeyRecord | null>;
  /** every key, newest first */
  list(): Promise<ApiKeyRecord[]>;
  /**
   * Revokes from `at` on; an earlier existing revocation is kept (revoking during a grace
   * period ends it). Returns the updated record, null for an unknown id.
   */
  revoke(id: string, at: Date): Promise<ApiKeyRecord | null>;
  /** records last-used instants (the latest wins); batched by the caller */
  touch(used: ReadonlyMap<string, Date>): Promise<void>;
  /** revocation broadcast between instances (PostgreSQL LISTEN/NOTIFY); absent: one instance */
  watchRevocations?(onRevoked: (id: string) => void, onReset: () => void): void;
  close(): Promise<void>;
}

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

export function isActive(key: ApiKeyRecord, now: number): boolean {
  if (key.revokedAt !== null && key.revokedAt.getTime() <= now) return false;
  if (key.expiresAt !== null && key.expiresAt.getTime() <= now) return false;
  return true;
}
