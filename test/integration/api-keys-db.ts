/** A private PostgreSQL schema per test file (dropped after), and a temp SQLite file. */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export type PrivateSchema = { name: string; url: string; drop(): Promise<void> };

export async function createSchema(): Promise<PrivateSchema> {
  const name = `t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  try {
    await admin.connect();
  } catch (err) {
    throw new Error(`PostgreSQL is not reachable at DATABASE_URL=${DATABASE_URL}: ${String(err)}`);
  }
  await admin.query(`CREATE SCHEMA ${name}`);
  await admin.end();
  const sep = DATABASE_URL.includes('?') ? '&' : '?';
  return {
    name,
    url: `${DATABASE_URL}${sep}options=${encodeURIComponent(`-c search_path=${name}`)}`,
    async drop() {
      const c = new pg.Client({ connectionString: DATABASE_URL });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS ${name} CASCADE`);
      await c.end();
    },
  };
}

export function tempSqliteFile(): { file: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-keys-'));
  return { file: join(dir, 'keys.db'), remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export type PrivateDatabase = {
  name: string;
  url: string;
  /** runs SQL in the database (default search_path: its `public` schema) */
  sql(text: string, values?: unknown[]): Promise<pg.QueryResult>;
  drop(): Promise<void>;
};

/**
 * A private database (`gatehouse_test_<random>`) with the server's default search_path, for what
 * a private schema cannot show: tables that land in `public`, next to other tools' tables.
 */
export async function createDatabase(): Promise<PrivateDatabase> {
  const name = `gatehouse_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: DATABASE_URL });
  try {
    await admin.connect();
  } catch (err) {
    throw new Error(`PostgreSQL is not reachable at DATABASE_URL=${DATABASE_URL}: ${String(err)}`);
  }
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(DATABASE_URL);
  url.pathname = `/${name}`;
  const client = new pg.Client({ connectionString: url.toString() });
  await client.connect();
  return {
    name,
    url: url.toString(),
    sql: (text, values) => client.query(text, values),
    async drop() {
      await client.end();
      const c = new pg.Client({ connectionString: DATABASE_URL });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}
