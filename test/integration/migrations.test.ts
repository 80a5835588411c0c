/**
 * The key stores' migrations next to other tools' tables: Gatehouse records its versions in its
 * own `gatehouse_schema_migrations`, adopts those of a Gatehouse that used `schema_migrations`,
 * leaves other tools' `schema_migrations` alone, and never reports success without `api_keys`.
 * PostgreSQL runs in a database of its own per test (default search_path, so tables land in
 * `public` as in a real deployment). The CLI tests run `bin/gatehouse.js` (`npm run build` first).
 */
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createKey } from '../../src/auth/api-keys/manage.js';
import { PostgresKeyRepository } from '../../src/stores/postgres-keys.js';
import { SqliteKeyRepository } from '../../src/stores/sqlite-keys.js';
import { SchemaError } from '../../src/stores/migrations.js';
import { spawnCli, writeTempConfig } from '../helpers/process.js';
import { createDatabase, tempSqliteFile, type PrivateDatabase } from './api-keys-db.js';

const SECRET = 'migrations-test-secret-0123456789';

/** What Gatehouse created before it had a table of its own (its first and only migration then). */
const OLD_GATEHOUSE_POSTGRES = [
  'CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)',
  `CREATE TABLE api_keys (
     id TEXT PRIMARY KEY, name TEXT NOT NULL, tier TEXT NOT NULL, roles TEXT[] NOT NULL DEFAULT '{}',
     hash TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL, expires_at TIMESTAMPTZ,
     revoked_at TIMESTAMPTZ, last_used_at TIMESTAMPTZ
   )`,
  'INSERT INTO schema_migrations (version) VALUES (1)',
];
const OLD_GATEHOUSE_SQLITE = [
  'CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)',
  `CREATE TABLE api_keys (
     id TEXT PRIMARY KEY, name TEXT NOT NULL, tier TEXT NOT NULL, roles TEXT NOT NULL DEFAULT '[]',
     hash TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER, revoked_at INTEGER,
     last_used_at INTEGER
   )`,
  'INSERT INTO schema_migrations (version) VALUES (1)',
];

/** Other tools' `schema_migrations`, with their rows. */
const FOREIGN = [
  {
    tool: 'Rails',
    setup: [
      'CREATE TABLE schema_migrations (version VARCHAR NOT NULL PRIMARY KEY)',
      "INSERT INTO schema_migrations VALUES ('20240105120000'), ('20240212093000')",
    ],
    rows: [{ version: '20240105120000' }, { version: '20240212093000' }],
  },
  {
    tool: 'golang-migrate',
    setup: [
      'CREATE TABLE schema_migrations (version BIGINT NOT NULL PRIMARY KEY, dirty BOOLEAN NOT NULL)',
      'INSERT INTO schema_migrations VALUES (3, false)',
    ],
    rows: [{ version: 3, dirty: false }],
  },
];

const newKey = (repo: PostgresKeyRepository | SqliteKeyRepository) =>
  createKey(repo, SECRET, { name: 'acme', tier: 'pro', roles: ['reader'], expiresAt: null });

describe('PostgreSQL migrations, in a database of their own', () => {
  let db: PrivateDatabase;
  const repos: PostgresKeyRepository[] = [];
  const open = () => {
    const repo = new PostgresKeyRepository(db.url);
    repos.push(repo);
    return repo;
  };
  const tableExists = async (name: string) =>
    (await db.sql('SELECT to_regclass($1) AS t', [name])).rows[0].t !== null;

  beforeEach(async () => {
    db = await createDatabase();
  });
  afterEach(async () => {
    await Promise.all(repos.splice(0).map((r) => r.close()));
    await db.drop();
  });

  it.each(FOREIGN.map((f) => [f.tool, f] as const))(
    'create the tables beside the schema_migrations of %s, and leave it alone',
    async (_tool, { setup, rows }) => {
      for (const statement of setup) await db.sql(statement);
      const repo = open();
      expect(await repo.runMigrations()).toEqual({
        location: 'schema "public"',
        version: 1,
        applied: [1],
        adopted: [],
      });
      expect(await tableExists('public.api_keys')).toBe(true);
      expect((await db.sql('SELECT version FROM gatehouse_schema_migrations')).rows).toEqual([
        { version: 1 },
      ]);
      // the other tool's table and rows are untouched
      expect((await db.sql('SELECT * FROM schema_migrations ORDER BY version')).rows).toEqual(
        rows.map((r) => ({ ...r, version: typeof r.version === 'number' ? String(r.version) : r.version })),
      );
      const { record } = await newKey(repo);
      expect((await repo.get(record.id))?.name).toBe('acme');
      // and the next run has nothing to do
      expect(await repo.runMigrations()).toMatchObject({ version: 1, applied: [], adopted: [] });
    },
  );

  it('adopt the versions of a Gatehouse that recorded them in schema_migrations, keeping its keys', async () => {
    for (const statement of OLD_GATEHOUSE_POSTGRES) await db.sql(statement);
    const repo = open();
    const { record } = await newKey(repo);
    expect(await repo.runMigrations()).toEqual({
      location: 'schema "public"',
      version: 1,
      applied: [],
      adopted: [1],
    });
    expect((await repo.get(record.id))?.name).toBe('acme');
    expect((await db.sql('SELECT version FROM gatehouse_schema_migrations')).rows).toEqual([{ version: 1 }]);
    // left in place (an instance still on the old version reads it) and never written again
    expect((await db.sql('SELECT version FROM schema_migrations')).rows).toEqual([{ version: 1 }]);
    expect(await repo.runMigrations()).toMatchObject({ applied: [], adopted: [] });
  });

  it("refuse an api_keys table that is not Gatehouse's, and leave nothing behind", async () => {
    await db.sql('CREATE TABLE api_keys (id SERIAL PRIMARY KEY, token TEXT NOT NULL)');
    const failure = open()
      .migrate()
      .then(
        () => null,
        (err: unknown) => err,
      );
    const err = await failure;
    expect(err).toBeInstanceOf(SchemaError);
    expect((err as Error).message).toMatch(
      /^cannot create Gatehouse's tables in schema "public": relation "api_keys" already exists; .*search_path/,
    );
    expect(await tableExists('gatehouse_schema_migrations')).toBe(false);
  });

  it('never report success while api_keys is missing', async () => {
    const repo = open();
    await repo.migrate();
    await db.sql('DROP TABLE api_keys');
    await expect(repo.migrate()).rejects.toThrow(
      /^table api_keys is missing in schema "public" although gatehouse_schema_migrations records its migration/,
    );
  });

  it('serialise instances migrating at once: one applies, the others find it done', async () => {
    const reports = await Promise.all([open(), open(), open(), open()].map((r) => r.runMigrations()));
    expect(reports.map((r) => r.applied).sort()).toEqual([[], [], [], [1]]);
    expect(reports.every((r) => r.version === 1)).toBe(true);
    expect((await db.sql('SELECT count(*)::int AS n FROM gatehouse_schema_migrations')).rows).toEqual([
      { n: 1 },
    ]);
  });
});

describe('SQLite migrations', () => {
  let sqlite: ReturnType<typeof tempSqliteFile>;
  const repos: SqliteKeyRepository[] = [];
  const open = () => {
    const repo = new SqliteKeyRepository(sqlite.file);
    repos.push(repo);
    return repo;
  };
  const prepare = (statements: string[]) => {
    const db = new Database(sqlite.file);
    for (const s of statements) db.exec(s);
    db.close();
  };
  const query = (sql: string) => {
    const db = new Database(sqlite.file, { readonly: true });
    try {
      return db.prepare(sql).all();
    } finally {
      db.close();
    }
  };

  beforeEach(() => {
    sqlite = tempSqliteFile();
  });
  afterEach(async () => {
    await Promise.all(repos.splice(0).map((r) => r.close()));
    sqlite.remove();
  });

  it("create the tables beside Rails' schema_migrations, and leave it alone", async () => {
    prepare(FOREIGN[0]!.setup);
    const repo = open();
    expect(await repo.runMigrations()).toEqual({
      location: `file ${sqlite.file}`,
      version: 1,
      applied: [1],
      adopted: [],
    });
    expect(query('SELECT version FROM gatehouse_schema_migrations')).toEqual([{ version: 1 }]);
    expect(query('SELECT version FROM schema_migrations ORDER BY version')).toEqual(FOREIGN[0]!.rows);
    const { record } = await newKey(repo);
    expect((await repo.get(record.id))?.name).toBe('acme');
  });

  it('adopt the versions of a Gatehouse that recorded them in schema_migrations, keeping its keys', async () => {
    prepare(OLD_GATEHOUSE_SQLITE);
    const repo = open();
    const { record } = await newKey(repo);
    expect(await repo.runMigrations()).toMatchObject({ version: 1, applied: [], adopted: [1] });
    expect((await repo.get(record.id))?.name).toBe('acme');
    expect(query('SELECT version FROM schema_migrations')).toEqual([{ version: 1 }]);
    expect(await repo.runMigrations()).toMatchObject({ applied: [], adopted: [] });
  });

  it("refuse an api_keys table that is not Gatehouse's, and leave nothing behind", async () => {
    prepare(['CREATE TABLE api_keys (id INTEGER PRIMARY KEY, token TEXT NOT NULL)']);
    await expect(open().migrate()).rejects.toThrow(
      /^cannot create Gatehouse's tables in file .*: table api_keys already exists; .*database\.file/,
    );
    expect(query("SELECT name FROM sqlite_master WHERE name = 'gatehouse_schema_migrations'")).toEqual([]);
  });

  it('never report success while api_keys is missing', async () => {
    const repo = open();
    await repo.migrate();
    prepare(['DROP TABLE api_keys']);
    await expect(repo.migrate()).rejects.toThrow(/^table api_keys is missing in file /);
  });
});

describe('gatehouse migrate', () => {
  const cli = async (args: string[]) => {
    const p = spawnCli(args);
    return { code: await p.exited, out: p.output() };
  };
  const configFor = (database: string) =>
    writeTempConfig(`database: ${database}\nauth: { apiKey: { secret: '${SECRET}' } }\n`);

  let db: PrivateDatabase | undefined;
  afterEach(async () => {
    await db?.drop();
    db = undefined;
  });

  it('creates the tables in a database where Rails keeps schema_migrations; keys work after', async () => {
    db = await createDatabase();
    for (const statement of FOREIGN[0]!.setup) await db.sql(statement);
    const config = configFor(`{ url: '${db.url}' }`);
    const migrated = await cli(['migrate', '-c', config]);
    expect(migrated.code).toBe(0);
    // before, migrate said `migrated (postgres)` here and every key command then failed
    const created = await cli(['keys', 'create', '--name', 'n', '--tier', 'free', '-c', config]);
    expect(created.out).toMatch(/^gh_[0-9A-Za-z]{12}_[0-9A-Za-z]{43}\n/);
    expect(created.code).toBe(0);
    expect(migrated.out).toBe('migrated (postgres): schema "public" at version 1 (applied 1)\n');
    expect((await cli(['migrate', '-c', config])).out).toBe(
      'migrated (postgres): schema "public" at version 1 (up to date)\n',
    );
  });

  it("exits 1 with the reason, not `migrated`, beside an api_keys table that is not Gatehouse's", async () => {
    db = await createDatabase();
    await db.sql('CREATE TABLE api_keys (id SERIAL PRIMARY KEY, token TEXT NOT NULL)');
    const migrated = await cli(['migrate', '-c', configFor(`{ url: '${db.url}' }`)]);
    expect(migrated.code).toBe(1);
    expect(migrated.out).toMatch(
      /^gatehouse: cannot create Gatehouse's tables in schema "public": relation "api_keys" already exists; .*\n$/,
    );
  });

  it('says when it adopts the versions of a SQLite file an older Gatehouse migrated', async () => {
    const sqlite = tempSqliteFile();
    try {
      const file = new Database(sqlite.file);
      for (const s of OLD_GATEHOUSE_SQLITE) file.exec(s);
      file.close();
      const migrated = await cli(['migrate', '-c', configFor(`{ file: '${sqlite.file}' }`)]);
      expect(migrated).toEqual({
        code: 0,
        out: `migrated (sqlite): file ${sqlite.file} at version 1 (adopted 1 from the old schema_migrations table)\n`,
      });
    } finally {
      sqlite.remove();
    }
  });
});
