/**
 * API keys in PostgreSQL (pg). Queries fail fast while the database is away (connection and
 * query timeouts), so the authenticator can answer from its cache or with 503.
 * A `?options=-c search_path=...` in the URL selects a schema (tests use their own).
 */
import pg from 'pg';
import type { ApiKeyRecord, KeyRepository, NewApiKey } from './database.js';
import {
  assertKeyTable,
  foreignTableError,
  knownVersionTexts,
  LEGACY_MIGRATIONS_TABLE,
  legacyVersions,
  MIGRATIONS_TABLE,
  pendingVersions,
  SchemaError,
  type MigrationReport,
} from './migrations.js';

const MIGRATIONS: readonly string[] = [
  `CREATE TABLE api_keys (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     tier TEXT NOT NULL,
     roles TEXT[] NOT NULL DEFAULT '{}',
     hash TEXT NOT NULL,
     created_at TIMESTAMPTZ NOT NULL,
     expires_at TIMESTAMPTZ,
     revoked_at TIMESTAMPTZ,
     last_used_at TIMESTAMPTZ
   )`,
];

/** serialises concurrent `migrate` runs (several instances starting at once) */
const MIGRATION_LOCK = 0x6761_7465;

/** The columns of `api_keys` where the search path finds it (none: no such table). */
async function keyColumns(client: pg.PoolClient): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT attname AS name FROM pg_attribute
      WHERE attrelid = to_regclass('api_keys') AND attnum > 0 AND NOT attisdropped`,
  );
  return rows.map((r) => r.name);
}

/**
 * The Gatehouse versions recorded in an old `schema_migrations` (its `version` read as text,
 * whatever its type: Rails keeps strings, golang-migrate bigints), if there is such a table.
 */
async function legacyRows(client: pg.PoolClient): Promise<string[]> {
  const { rows: column } = await client.query(
    `SELECT 1 FROM pg_attribute
      WHERE attrelid = to_regclass($1) AND attname = 'version' AND NOT attisdropped`,
    [LEGACY_MIGRATIONS_TABLE],
  );
  if (column.length === 0) return [];
  const { rows } = await client.query<{ v: string }>(
    `SELECT version::text AS v FROM ${LEGACY_MIGRATIONS_TABLE} WHERE version::text = ANY($1)`,
    [knownVersionTexts(MIGRATIONS.length)],
  );
  return rows.map((r) => r.v);
}

type Row = {
  id: string;
  name: string;
  tier: string;
  roles: string[];
  hash: string;
  created_at: Date;
  expires_at: Date | null;
  revoked_at: Date | null;
  last_used_at: Date | null;
};

function fromRow(r: Row): ApiKeyRecord {
  return {
    id: r.id,
    name: r.name,
    tier: r.tier,
    roles: r.roles,
    hash: r.hash,
    createdAt: r.created_at,
    expiresAt: r.expires_at,
    revokedAt: r.revoked_at,
    lastUsedAt: r.last_used_at,
  };
}

export const REVOCATION_CHANNEL = 'gatehouse_key_revoked';

export type PostgresOptions = { connectionTimeout?: number; queryTimeout?: number };

export class PostgresKeyRepository implements KeyRepository {
  readonly kind = 'postgres';
  readonly pool: pg.Pool;

  constructor(
    readonly url: string,
    options: PostgresOptions = {},
  ) {
    this.pool = new pg.Pool({
      connectionString: url,
      max: 10,
      connectionTimeoutMillis: options.connectionTimeout ?? 1000,
      query_timeout: options.queryTimeout ?? 2000,
      idleTimeoutMillis: 30_000,
    });
    // an idle client losing its connection must not crash the process
    this.pool.on('error', () => undefined);
  }

  async migrate(): Promise<void> {
    await this.runMigrations();
  }

  /**
   * One transaction under an advisory lock (instances starting together wait for each other):
   * record table, adoption of an old `schema_migrations`, pending migrations, then the check that
   * `api_keys` is in place. Unqualified names: the schema is the URL's `search_path`.
   */
  async runMigrations(): Promise<MigrationReport> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      const { rows: where } = await client.query<{ schema: string | null }>(
        'SELECT current_schema() AS schema',
      );
      const schema = where[0]?.schema;
      if (!schema) {
        throw new SchemaError(
          'no schema to create the tables in: the search_path of database.url names no existing schema',
        );
      }
      const location = `schema "${schema}"`;
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (
           version INTEGER PRIMARY KEY,
           applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )`,
      );
      const { rows } = await client.query<{ version: number }>(`SELECT version FROM ${MIGRATIONS_TABLE}`);
      const applied = new Set(rows.map((r) => r.version));
      let adopted: number[] = [];
      if (applied.size === 0) {
        adopted = legacyVersions(await legacyRows(client), await keyColumns(client), MIGRATIONS.length);
        for (const v of adopted) {
          await client.query(`INSERT INTO ${MIGRATIONS_TABLE} (version) VALUES ($1)`, [v]);
          applied.add(v);
        }
      }
      const run = pendingVersions(applied, MIGRATIONS.length);
      for (const v of run) {
        try {
          await client.query(MIGRATIONS[v - 1] as string);
        } catch (err) {
          // 42P07 duplicate_table: a table of that name that Gatehouse did not create
          if ((err as { code?: unknown }).code === '42P07') throw foreignTableError(location, err, true);
          throw err;
        }
        await client.query(`INSERT INTO ${MIGRATIONS_TABLE} (version) VALUES ($1)`, [v]);
      }
      assertKeyTable(await keyColumns(client), location);
      await client.query('COMMIT');
      return { location, version: Math.max(0, ...applied, ...run), applied: run, adopted };
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async insert(k: NewApiKey): Promise<void> {
    await this.pool.query(
      'INSERT INTO api_keys (id, name, tier, roles, hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)',
      [k.id, k.name, k.tier, [...k.roles], k.hash, k.createdAt, k.expiresAt],
    );
  }

  async get(id: string): Promise<ApiKeyRecord | null> {
    const { rows } = await this.pool.query<Row>('SELECT * FROM api_keys WHERE id = $1', [id]);
    return rows[0] ? fromRow(rows[0]) : null;
  }

  async list(): Promise<ApiKeyRecord[]> {
    const { rows } = await this.pool.query<Row>('SELECT * FROM api_keys ORDER BY created_at DESC, id');
    return rows.map(fromRow);
  }

  async revoke(id: string, at: Date): Promise<ApiKeyRecord | null> {
    // the notification goes out with the update: every instance drops the key from its cache
    const { rows } = await this.pool.query<Row>(
      `WITH u AS (
         UPDATE api_keys SET revoked_at = LEAST(COALESCE(revoked_at, $1), $1) WHERE id = $2 RETURNING *
       )
       SELECT u.*, pg_notify('${REVOCATION_CHANNEL}', u.id) FROM u`,
      [at, id],
    );
    return rows[0] ? fromRow(rows[0]) : null;
  }

  async touch(used: ReadonlyMap<string, Date>): Promise<void> {
    if (used.size === 0) return;
    await this.pool.query(
      `UPDATE api_keys k SET last_used_at = GREATEST(COALESCE(k.last_used_at, u.at), u.at)
         FROM UNNEST($1::text[], $2::timestamptz[]) AS u(id, at) WHERE k.id = u.id`,
      [[...used.keys()], [...used.values()]],
    );
  }

  /**
   * LISTEN for revocations; reconnects after a loss, and then calls `onReset` (notifications
   * sent meanwhile are lost: the caller drops its whole cache).
   */
  watchRevocations(onRevoked: (id: string) => void, onReset: () => void): void {
    if (this.closed) return;
    const client = new pg.Client({ connectionString: this.url, connectionTimeoutMillis: 2000 });
    this.listener = client;
    let retried = false;
    const retry = () => {
      if (retried || this.closed) return;
      retried = true;
      void client.end().catch(() => undefined);
      onReset();
      const timer = setTimeout(() => this.watchRevocations(onRevoked, onReset), 500);
      timer.unref();
    };
    client.on('error', retry);
    client.on('end', retry);
    client.on('notification', (msg) => {
      if (msg.channel === REVOCATION_CHANNEL && msg.payload) onRevoked(msg.payload);
    });
    client
      .connect()
      .then(() => client.query(`LISTEN ${REVOCATION_CHANNEL}`))
      .then(
        () => onReset(), // anything revoked before the LISTEN took effect is refetched
        retry,
      );
  }

  private listener: pg.Client | null = null;
  private closed = false;

  async close(): Promise<void> {
    this.closed = true;
    await this.listener?.end().catch(() => undefined);
    await this.pool.end();
  }
}
