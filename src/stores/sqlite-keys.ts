/** API keys in an embedded SQLite file (better-sqlite3): one instance, no broadcast needed. */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { ApiKeyRecord, KeyRepository, NewApiKey } from './database.js';

/** Ordered migrations; `schema_migrations` records the applied versions. */
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

  constructor(file: string) {
    if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('busy_timeout = 2000');
  }

  async migrate(): Promise<void> {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)');
    this.db
      .transaction(() => {
        const row = this.db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as {
          v: number | null;
        };
        for (let v = (row.v ?? 0) + 1; v <= MIGRATIONS.length; v++) {
          this.db.exec(MIGRATIONS[v - 1] as string);
          this.db.prepare('INSERT INTO schema_migrations (version) VALUES (?)').run(v);
        }
      })
      .immediate();
  }

  async insert(k: NewApiKey): Promise<void> {
    this.db
      .prepare(
        'INSERT INTO api_keys (id, name, tier, roles, hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      )
      .run(
        k.id,
        k.name,
        k.tier,
        JSON.stringify(k.roles),
        k.hash,
        k.createdAt.getTime(),
        k.expiresAt?.getTime() ?? null,
      );
  }

  async get(id: string): Promise<ApiKeyRecord | null> {
    const row = this.db.prepare('SELECT * FROM api_keys WHERE id = ?').get(id) as Row | undefined;
    return row ? fromRow(row) : null;
  }

  async list(): Promise<ApiKeyRecord[]> {
    const rows = this.db.prepare('SELECT * FROM api_keys ORDER BY created_at DESC, id').all() as Row[];
    return rows.map(fromRow);
  }

  async revoke(id: string, at: Date): Promise<ApiKeyRecord | null> {
    this.db
      .prepare('UPDATE api_keys SET revoked_at = MIN(COALESCE(revoked_at, ?), ?) WHERE id = ?')
      .run(at.getTime(), at.getTime(), id);
    return this.get(id);
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
