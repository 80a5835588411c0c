/**
 * API keys in an embedded SQLite file (better-sqlite3): one host, no broadcast needed. The
 * database's clock is the host's (SQLite reads the calling process's clock): instants are taken
 * in SQL (`unixepoch('subsec')`) like PostgreSQL's `now()`, and a rotation is one IMMEDIATE
 * transaction (the write lock is taken first, so concurrent rotations, across processes too,
 * are serialised and the second sees the first's revocation).
 */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type {
  ApiKeyRecord,
  KeyChanges,
  KeyPage,
  KeyPageQuery,
  KeyReads,
  KeyRepository,
  NewApiKey,
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
  type MigrationReport,
} from './migrations.js';

/** Ordered migrations; `gatehouse_schema_migrations` records the applied versions. */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE api_keys (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     tier TEXT NOT NULL,
     roles TEXT NOT NULL DEFAULT '[]',
     hash TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     expires_at INTEGER,
     revoked_at INTEGER,
     last_used_at INTEGER
   )`,
];

type Row = {
  id: string;
  name: string;
  tier: string;
  roles: string;
  hash: string;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
  last_used_at: number | null;
};

const date = (ms: number | null): Date | null => (ms === null ? null : new Date(ms));

/** the host's clock in milliseconds, as SQLite reads it */
const NOW_MS = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

function fromRow(r: Row): ApiKeyRecord {
  return {
    id: r.id,
    name: r.name,
    tier: r.tier,
    roles: JSON.parse(r.roles) as string[],
    hash: r.hash,
    createdAt: new Date(r.created_at),
    expiresAt: date(r.expires_at),
    revokedAt: date(r.revoked_at),
    lastUsedAt: date(r.last_used_at),
  };
}

export class SqliteKeyRepository implements KeyRepository {
  readonly kind = 'sqlite';
  private readonly db: Database.Database;

  constructor(private readonly file: string) {
    if (file !== ':memory:') makeDirectories(dirname(file));
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('busy_timeout = 2000');
  }

  async migrate(): Promise<void> {
    await this.runMigrations();
  }

  /**
   * One immediate transaction (the file's write lock: a second process waits, busy_timeout):
   * record table, adoption of an old `schema_migrations`, pending migrations, then the check that
   * `api_keys` is in place.
   */
  async runMigrations(): Promise<MigrationReport> {
    const location = `file ${this.file}`;
    const columns = (table: string) =>
      (this.db.prepare('SELECT name FROM pragma_table_info(?)').all(table) as Array<{ name: string }>).map(
        (r) => r.name,
      );
    return this.db
      .transaction((): MigrationReport => {
        this.db.exec(
          `CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (
             version INTEGER PRIMARY KEY,
             applied_at INTEGER NOT NULL
           )`,
        );
        const record = this.db.prepare(`INSERT INTO ${MIGRATIONS_TABLE} (version, applied_at) VALUES (?, ?)`);
        const rows = this.db.prepare(`SELECT version FROM ${MIGRATIONS_TABLE}`).all() as Array<{
          version: number;
        }>;
        const applied = new Set(rows.map((r) => r.version));
        let adopted: number[] = [];
        if (applied.size === 0) {
          adopted = legacyVersions(this.legacyRows(columns), columns('api_keys'), MIGRATIONS.length);
          for (const v of adopted) {
            record.run(v, Date.now());
            applied.add(v);
          }
        }
        const run = pendingVersions(applied, MIGRATIONS.length);
        for (const v of run) {
          try {
            this.db.exec(MIGRATIONS[v - 1] as string);
          } catch (err) {
            if (err instanceof Error && / already exists$/.test(err.message)) {
              throw foreignTableError(location, err, false);
            }
            throw err;
          }
          record.run(v, Date.now());
        }
        assertKeyTable(columns('api_keys'), location);
        return { location, version: Math.max(0, ...applied, ...run), applied: run, adopted };
      })
      .immediate();
  }

  /** The Gatehouse versions recorded in an old `schema_migrations`, if there is such a table. */
  private legacyRows(columns: (table: string) => string[]): string[] {
    if (!columns(LEGACY_MIGRATIONS_TABLE).includes('version')) return [];
    const known = knownVersionTexts(MIGRATIONS.length);
    const rows = this.db
      .prepare(
        `SELECT CAST(version AS TEXT) AS v FROM ${LEGACY_MIGRATIONS_TABLE}
          WHERE CAST(version AS TEXT) IN (${known.map(() => '?').join(', ')})`,
      )
      .all(...known) as Array<{ v: string }>;
    return rows.map((r) => r.v);
  }

  async insert(k: NewApiKey): Promise<ApiKeyRecord> {
    const row = this.db
      .prepare(
        `INSERT INTO api_keys (id, name, tier, roles, hash, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?, COALESCE(?, ${NOW_MS}), COALESCE(${NOW_MS} + ?, ?)) RETURNING *`,
      )
      .get(
        k.id,
        k.name,
        k.tier,
        JSON.stringify(k.roles),
        k.hash,
        k.createdAt?.getTime() ?? null,
        k.lifetimeMs ?? null,
        k.expiresAt?.getTime() ?? null,
      ) as Row;
    return fromRow(row);
  }

  async get(id: string): Promise<ApiKeyRecord | null> {
    const row = this.db.prepare('SELECT * FROM api_keys WHERE id = ?').get(id) as Row | undefined;
    return row ? fromRow(row) : null;
  }

  async readMany(ids: readonly string[]): Promise<KeyReads> {
    const dbTime = Date.now();
    const rows = this.db
      .prepare('SELECT * FROM api_keys WHERE id IN (SELECT value FROM json_each(?))')
      .all(JSON.stringify(ids)) as Row[];
    return { records: rows.map(fromRow), dbTime };
  }

  async list(): Promise<ApiKeyRecord[]> {
    const rows = this.db.prepare('SELECT * FROM api_keys ORDER BY created_at DESC, id').all() as Row[];
    return rows.map(fromRow);
  }

  async page(q: KeyPageQuery): Promise<KeyPage> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (q.after !== undefined) {
      where.push('(created_at < ? OR (created_at = ? AND id > ?))');
      const at = Number(q.after.created);
      params.push(at, at, q.after.id);
    }
    if (q.tier !== undefined) {
      where.push('tier = ?');
      params.push(q.tier);
    }
    if (q.namePrefix !== undefined) {
      where.push('substr(name, 1, length(?)) = ?');
      params.push(q.namePrefix, q.namePrefix);
    }
    const active = `(revoked_at IS NULL OR revoked_at > ${NOW_MS})`;
    if (q.status === 'active') where.push(`${active} AND (expires_at IS NULL OR expires_at > ${NOW_MS})`);
    else if (q.status === 'revoked') where.push(`revoked_at <= ${NOW_MS}`);
    else if (q.status === 'expired') where.push(`expires_at <= ${NOW_MS} AND ${active}`);
    params.push(q.limit + 1);
    const rows = this.db
      .prepare(
        `SELECT * FROM api_keys ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
          ORDER BY created_at DESC, id LIMIT ?`,
      )
      .all(...params) as Row[];
    const more = rows.length > q.limit;
    const page = more ? rows.slice(0, q.limit) : rows;
    const last = page[page.length - 1];
    return {
      records: page.map(fromRow),
      next: more && last !== undefined ? { created: String(last.created_at), id: last.id } : null,
    };
  }

  async update(id: string, c: KeyChanges): Promise<ApiKeyRecord | null> {
    const row = this.db
      .prepare(
        `UPDATE api_keys SET name = COALESCE(?, name), tier = COALESCE(?, tier), roles = COALESCE(?, roles),
                expires_at = CASE WHEN ? THEN ? ELSE expires_at END
          WHERE id = ? RETURNING *`,
      )
      .get(
        c.name ?? null,
        c.tier ?? null,
        c.roles === undefined ? null : JSON.stringify(c.roles),
        c.expiresAt === undefined ? 0 : 1,
        c.expiresAt?.getTime() ?? null,
        id,
      ) as Row | undefined;
    return row ? fromRow(row) : null;
  }

  async now(): Promise<Date> {
    const row = this.db.prepare(`SELECT ${NOW_MS} AS now`).get() as { now: number };
    return new Date(row.now);
  }

  async revoke(id: string): Promise<ApiKeyRecord | null> {
    const row = this.db
      .prepare(
        `UPDATE api_keys SET revoked_at = MIN(COALESCE(revoked_at, ${NOW_MS}), ${NOW_MS}) WHERE id = ? RETURNING *`,
      )
      .get(id) as Row | undefined;
    return row ? fromRow(row) : null;
  }

  async rotate(
    id: string,
    replacement: { id: string; hash: string },
    graceMs: number,
  ): Promise<RotationResult> {
    return this.db
      .transaction((): RotationResult => {
        const now = (this.db.prepare(`SELECT ${NOW_MS} AS now`).get() as { now: number }).now;
        const old = this.db.prepare('SELECT * FROM api_keys WHERE id = ?').get(id) as Row | undefined;
        if (old === undefined) return { kind: 'not_found' };
        if (old.revoked_at !== null) return { kind: 'revoked', at: new Date(old.revoked_at), dbTime: now };
        if (old.expires_at !== null && old.expires_at <= now)
          return { kind: 'expired', at: new Date(old.expires_at) };
        const created = this.db
          .prepare(
            `INSERT INTO api_keys (id, name, tier, roles, hash, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *`,
          )
          .get(replacement.id, old.name, old.tier, old.roles, replacement.hash, now, old.expires_at) as Row;
        const previous = this.db
          .prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ? RETURNING *')
          .get(now + graceMs, id) as Row;
        return { kind: 'rotated', previous: fromRow(previous), created: fromRow(created) };
      })
      .immediate();
  }

  async touch(used: ReadonlyMap<string, Date>): Promise<void> {
    const stmt = this.db.prepare(
      'UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) WHERE id = ?',
    );
    this.db.transaction(() => {
      for (const [id, at] of used) stmt.run(at.getTime(), id);
    })();
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}

/**
 * Creates `dir` and its missing parents, one level at a time. Not `mkdirSync(dir, { recursive:
 * true })`: under /proc, where mkdir answers ENOENT for a directory whose parent exists, node's
 * recursive mkdir loops forever, synchronously (seen on Node 20: a `database.file` of
 * /proc/nope/keys.db hung the start, deaf to SIGTERM). An error names the directory.
 */
export function makeDirectories(dir: string): void {
  const missing: string[] = [];
  for (let d = dir; !existsSync(d); d = dirname(d)) {
    if (dirname(d) === d) break; // the root: nothing above to create from
    missing.push(d);
  }
  for (const d of missing.reverse()) {
    try {
      mkdirSync(d);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST')
        throw new Error(
          `cannot create the directory ${d} for the key store: ${String((err as Error).message)}`,
          {
            cause: err,
          },
        );
    }
  }
}
