/**
 * API keys in PostgreSQL (pg). Queries fail fast while the database is away (connection and
 * query timeouts), so the authenticator can answer from its cache or with 503.
 * A `?options=-c search_path=...` in the URL selects a schema (tests use their own).
 */
import pg from 'pg';
import type { ApiKeyRecord, KeyRepository, NewApiKey } from './database.js';

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
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
      await client.query('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)');
      const { rows } = await client.query<{ v: number | null }>(
        'SELECT MAX(version) AS v FROM schema_migrations',
      );
      for (let v = (rows[0]?.v ?? 0) + 1; v <= MIGRATIONS.length; v++) {
        await client.query(MIGRATIONS[v - 1] as string);
        await client.query('INSERT INTO schema_migrations (version) VALUES ($1)', [v]);
      }
      await client.query('COMMIT');
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
