/**
 * API keys in PostgreSQL (pg). Queries fail fast while the database is away (connection and
 * query timeouts), so the authenticator can answer from its cache or with 503.
 * A `?options=-c search_path=...` in the URL selects a schema (tests use their own).
 *
 * Instants come from the database (`now()`), never from this process's clock. Revocations and
 * rotations send a NOTIFY in the same transaction; `watchRevocations` LISTENs on a dedicated
 * connection with TCP keepalive and a heartbeat: a connection that stops answering (a frozen
 * backend, a NAT or firewall that silently dropped the flow) is noticed and replaced.
 */
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import type {
  ApiKeyRecord,
  KeyChanges,
  KeyPage,
  KeyPageQuery,
  KeyReads,
  KeyRepository,
  NewApiKey,
  RevocationWatcher,
  RotationResult,
} from './key-repository.js';
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

export type PostgresOptions = {
  connectionTimeout?: number;
  queryTimeout?: number;
  /** how often the listening connection is asked to answer (a `SELECT 1` on it) */
  heartbeatInterval?: number;
  /** a heartbeat unanswered for this long: the listening connection is replaced */
  heartbeatTimeout?: number;
};

/** Pool size. Lookups are capped below it (authenticator `maxInFlight`): they never queue here. */
export const POOL_SIZE = 10;

const KEEPALIVE_DELAY_MS = 5_000;
const RELISTEN_DELAY_MS = 500;

export class PostgresKeyRepository implements KeyRepository {
  readonly kind = 'postgres';
  readonly pool: pg.Pool;
  private readonly heartbeatInterval: number;
  private readonly heartbeatTimeout: number;

  constructor(
    readonly url: string,
    options: PostgresOptions = {},
  ) {
    this.pool = new pg.Pool({
      connectionString: url,
      max: POOL_SIZE,
      connectionTimeoutMillis: options.connectionTimeout ?? 1000,
      query_timeout: options.queryTimeout ?? 2000,
      idleTimeoutMillis: 30_000,
      keepAlive: true,
      keepAliveInitialDelayMillis: KEEPALIVE_DELAY_MS,
    });
    // an idle client losing its connection must not crash the process
    this.pool.on('error', () => undefined);
    this.heartbeatInterval = options.heartbeatInterval ?? 1000;
    this.heartbeatTimeout = options.heartbeatTimeout ?? 2000;
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

  async insert(k: NewApiKey): Promise<ApiKeyRecord> {
    const { rows } = await this.pool.query<Row>(
      `INSERT INTO api_keys (id, name, tier, roles, hash, created_at, expires_at)
       VALUES ($1, $2, $3, $4, $5, COALESCE($6, now()),
               CASE WHEN $8::double precision IS NULL THEN $7::timestamptz
                    ELSE now() + $8::double precision * interval '1 millisecond' END)
       RETURNING *`,
      [
        k.id,
        k.name,
        k.tier,
        [...k.roles],
        k.hash,
        k.createdAt ?? null,
        k.expiresAt ?? null,
        k.lifetimeMs ?? null,
      ],
    );
    return fromRow(rows[0] as Row);
  }

  async get(id: string): Promise<ApiKeyRecord | null> {
    const { rows } = await this.pool.query<Row>('SELECT * FROM api_keys WHERE id = $1', [id]);
    return rows[0] ? fromRow(rows[0]) : null;
  }

  async readMany(ids: readonly string[]): Promise<KeyReads> {
    // one row even when nothing matches: the database's clock always comes back
    const { rows } = await this.pool.query<Partial<Row> & { db_now: Date }>(
      `SELECT now() AS db_now, k.*
         FROM (VALUES (1)) AS one (x) LEFT JOIN api_keys k ON k.id = ANY ($1::text[])`,
      [[...ids]],
    );
    const records: ApiKeyRecord[] = [];
    for (const r of rows) if (r.id != null) records.push(fromRow(r as Row));
    return { records, dbTime: (rows[0] as { db_now: Date }).db_now.getTime() };
  }

  async list(): Promise<ApiKeyRecord[]> {
    const { rows } = await this.pool.query<Row>('SELECT * FROM api_keys ORDER BY created_at DESC, id');
    return rows.map(fromRow);
  }

  async page(q: KeyPageQuery): Promise<KeyPage> {
    const where: string[] = [];
    const params: unknown[] = [];
    const param = (v: unknown): string => {
      params.push(v);
      return `$${params.length}`;
    };
    if (q.after !== undefined) {
      const at = `('epoch'::timestamptz + ${param(q.after.created)}::bigint * interval '1 microsecond')`;
      where.push(`(created_at < ${at} OR (created_at = ${at} AND id > ${param(q.after.id)}))`);
    }
    if (q.tier !== undefined) where.push(`tier = ${param(q.tier)}`);
    if (q.namePrefix !== undefined) {
      const p = param(q.namePrefix);
      where.push(`left(name, length(${p})) = ${p}`);
    }
    if (q.status === 'active')
      where.push('(revoked_at IS NULL OR revoked_at > now()) AND (expires_at IS NULL OR expires_at > now())');
    else if (q.status === 'revoked') where.push('revoked_at <= now()');
    else if (q.status === 'expired')
      where.push('expires_at <= now() AND (revoked_at IS NULL OR revoked_at > now())');
    const { rows } = await this.pool.query<Row & { created_us: string }>(
      `SELECT *, (extract(epoch FROM created_at) * 1000000)::bigint::text AS created_us FROM api_keys
        ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
        ORDER BY created_at DESC, id LIMIT ${param(q.limit + 1)}`,
      params,
    );
    const more = rows.length > q.limit;
    const page = more ? rows.slice(0, q.limit) : rows;
    const last = page[page.length - 1];
    return {
      records: page.map(fromRow),
      next: more && last !== undefined ? { created: last.created_us, id: last.id } : null,
    };
  }

  async update(id: string, c: KeyChanges): Promise<ApiKeyRecord | null> {
    // announced like a revocation: every instance drops the key from its cache and re-reads it
    const { rows } = await this.pool.query<Row>(
      `WITH u AS (
         UPDATE api_keys SET name = COALESCE($2, name), tier = COALESCE($3, tier),
                roles = COALESCE($4::text[], roles),
                expires_at = CASE WHEN $5::boolean THEN $6::timestamptz ELSE expires_at END
          WHERE id = $1 RETURNING *
       )
       SELECT u.*, pg_notify('${REVOCATION_CHANNEL}', u.id) FROM u`,
      [
        id,
        c.name ?? null,
        c.tier ?? null,
        c.roles === undefined ? null : [...c.roles],
        c.expiresAt !== undefined,
        c.expiresAt ?? null,
      ],
    );
    return rows[0] ? fromRow(rows[0]) : null;
  }

  async now(): Promise<Date> {
    const { rows } = await this.pool.query<{ now: Date }>('SELECT now() AS now');
    return (rows[0] as { now: Date }).now;
  }

  async revoke(id: string): Promise<ApiKeyRecord | null> {
    // the notification goes out with the update: every instance drops the key from its cache
    const { rows } = await this.pool.query<Row>(
      `WITH u AS (
         UPDATE api_keys SET revoked_at = LEAST(COALESCE(revoked_at, now()), now()) WHERE id = $1 RETURNING *
       )
       SELECT u.*, pg_notify('${REVOCATION_CHANNEL}', u.id) FROM u`,
      [id],
    );
    return rows[0] ? fromRow(rows[0]) : null;
  }

  async rotate(
    id: string,
    replacement: { id: string; hash: string },
    graceMs: number,
  ): Promise<RotationResult> {
    const client = await this.pool.connect();
    try {
      await client.query('BEGIN');
      // FOR UPDATE: a concurrent rotation waits here, then sees this one's revocation
      const { rows } = await client.query<Row & { db_now: Date }>(
        'SELECT *, now() AS db_now FROM api_keys WHERE id = $1 FOR UPDATE',
        [id],
      );
      const old = rows[0];
      const refused = old === undefined ? ({ kind: 'not_found' } as const) : refusal(old, old.db_now);
      if (refused !== null || old === undefined) {
        await client.query('ROLLBACK');
        return refused ?? { kind: 'not_found' };
      }
      const created = await client.query<Row>(
        `INSERT INTO api_keys (id, name, tier, roles, hash, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, now(), $6) RETURNING *`,
        [replacement.id, old.name, old.tier, old.roles, replacement.hash, old.expires_at],
      );
      const previous = await client.query<Row>(
        `UPDATE api_keys SET revoked_at = now() + $2::double precision * interval '1 millisecond'
          WHERE id = $1 RETURNING *, pg_notify('${REVOCATION_CHANNEL}', id)`,
        [id, graceMs],
      );
      await client.query('COMMIT');
      return {
        kind: 'rotated',
        previous: fromRow(previous.rows[0] as Row),
        created: fromRow(created.rows[0] as Row),
      };
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
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
   * LISTEN for revocations on a dedicated connection. A heartbeat (`SELECT 1` every
   * `heartbeatInterval`) confirms it: PostgreSQL delivers pending notifications before a query's
   * answer, so an answered heartbeat sent `ageMs` ago means nothing older was missed
   * (`watcher.alive`). A heartbeat unanswered for `heartbeatTimeout`, an error or the end of the
   * connection: the connection is dropped and replaced, and `watcher.reset` is called (then
   * again once the new LISTEN is in place: notifications sent meanwhile are lost).
   */
  watchRevocations(watcher: RevocationWatcher): void {
    if (this.closed) return;
    const client = new pg.Client({
      connectionString: this.url,
      connectionTimeoutMillis: 2000,
      // keeps NAT and firewall state alive, and ends a connection whose peer host vanished
      keepAlive: true,
      keepAliveInitialDelayMillis: KEEPALIVE_DELAY_MS,
    });
    let gone = false;
    let heartbeat: NodeJS.Timeout | undefined;
    /** performance.now() when the unanswered heartbeat was sent; null: none outstanding */
    let outstanding: number | null = null;
    this.stopListening = () => {
      gone = true;
      clearInterval(heartbeat);
      return endClient(client);
    };
    const replace = (reason: string) => {
      if (gone) return;
      gone = true;
      clearInterval(heartbeat);
      // no goodbye on a connection that stopped answering: it would wait for it forever
      client.connection.stream.destroy();
      if (this.closed) return;
      watcher.reset();
      watcher.lost(reason);
      const timer = setTimeout(() => this.watchRevocations(watcher), RELISTEN_DELAY_MS);
      timer.unref();
    };
    client.on('error', (err: Error) => replace(err.message));
    client.on('end', () => replace('connection ended'));
    client.on('notification', (msg) => {
      if (msg.channel === REVOCATION_CHANNEL && msg.payload) watcher.revoked(msg.payload);
    });
    const beat = () => {
      if (gone) return;
      const now = performance.now();
      if (outstanding !== null) {
        if (now - outstanding >= this.heartbeatTimeout) replace('heartbeat unanswered');
        return;
      }
      const sent = now;
      outstanding = sent;
      client.query('SELECT 1').then(
        () => {
          outstanding = null;
          if (!gone) watcher.alive(performance.now() - sent);
        },
        (err: unknown) => replace(err instanceof Error ? err.message : String(err)),
      );
    };
    const sent = performance.now();
    client
      .connect()
      .then(() => client.query(`LISTEN ${REVOCATION_CHANNEL}`))
      .then(
        () => {
          if (gone) return;
          // anything revoked before the LISTEN took effect is re-read
          watcher.reset();
          watcher.alive(performance.now() - sent);
          // checked twice per timeout: an unanswered beat is noticed within 1.5 timeouts at most
          heartbeat = setInterval(beat, Math.min(this.heartbeatInterval, this.heartbeatTimeout / 2));
          heartbeat.unref();
        },
        (err: unknown) => replace(err instanceof Error ? err.message : String(err)),
      );
  }

  private stopListening: (() => Promise<void>) | null = null;
  private closed = false;

  async close(): Promise<void> {
    this.closed = true;
    await this.stopListening?.();
    // a database that stopped answering never acknowledges the goodbyes: do not wait forever
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.pool.end(),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, 2000);
        timer.unref();
      }),
    ]);
    clearTimeout(timer);
  }
}

/** Ends a client politely, or cuts it when the server does not answer the goodbye within 1 s. */
async function endClient(client: pg.Client): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const cut = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      client.connection.stream.destroy();
      resolve();
    }, 1000);
  });
  await Promise.race([client.end().catch(() => undefined), cut]);
  clearTimeout(timer);
}

/** Why a key cannot be rotated at `now` (the database's clock), or null. */
function refusal(row: Row, now: Date): RotationResult | null {
  if (row.revoked_at !== null) return { kind: 'revoked', at: row.revoked_at, dbTime: now.getTime() };
  if (row.expires_at !== null && row.expires_at.getTime() <= now.getTime())
    return { kind: 'expired', at: row.expires_at };
  return null;
}
