/**
 * The API key repository's contract, which both stores implement (postgres-keys.ts,
 * sqlite-keys.ts) and database.ts opens: a leaf, so that the stores need not import the module
 * that loads them.
 */

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

/** A key's status at the database's now (a key in its rotation grace period is `active`). */
export type KeyStatus = 'active' | 'revoked' | 'expired';

/**
 * Where a page of keys ends: the last key's creation instant as the store keeps it (a decimal
 * string, exact: PostgreSQL's microseconds, SQLite's milliseconds) and its id.
 */
export type KeyPosition = { readonly created: string; readonly id: string };

export type KeyPageQuery = {
  /** at most this many records (1 or more) */
  readonly limit: number;
  /** the keys after this one in the listing's order (newest first, then by id) */
  readonly after?: KeyPosition | undefined;
  readonly tier?: string | undefined;
  readonly status?: KeyStatus | undefined;
  /** names starting with this (compared exactly, case-sensitive) */
  readonly namePrefix?: string | undefined;
};

export type KeyPage = {
  readonly records: readonly ApiKeyRecord[];
  /** where the next page starts; null when this one is the last */
  readonly next: KeyPosition | null;
};

/** What `update` changes; an absent field is kept. */
export type KeyChanges = {
  readonly name?: string;
  readonly tier?: string;
  readonly roles?: readonly string[];
  /** an absolute expiry, or null for none */
  readonly expiresAt?: Date | null;
};

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
  /** one page of the keys that pass the filters, newest first (then by id) */
  page(query: KeyPageQuery): Promise<KeyPage>;
  /**
   * Changes a key's name, tier, roles or expiry. Announced like a revocation (every instance
   * re-reads the key before trusting it again). Returns the updated record, null for an unknown id.
   */
  update(id: string, changes: KeyChanges): Promise<ApiKeyRecord | null>;
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
