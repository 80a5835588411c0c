/** The key repository contract, run on PostgreSQL (private schema) and on SQLite (temp file). */
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createKey, rotateKey } from '../../src/auth/api-keys/manage.js';
import { hashKey, keyMatches } from '../../src/auth/api-keys/format.js';
import { isActive, type KeyRepository } from '../../src/stores/database.js';
import { PostgresKeyRepository } from '../../src/stores/postgres-keys.js';
import { SqliteKeyRepository } from '../../src/stores/sqlite-keys.js';
import { createSchema, tempSqliteFile, type PrivateSchema } from './api-keys-db.js';

const SECRET = 'contract-test-secret-0123456789';

type Backend = {
  name: string;
  open(): Promise<KeyRepository>;
  /** runs SQL on its own connection (a trigger to make a step fail) */
  exec(sql: string): Promise<void>;
  cleanup(): Promise<void>;
};

let schema: PrivateSchema;
const sqlite = tempSqliteFile();

const backends: Backend[] = [
  {
    name: 'postgres',
    open: async () => new PostgresKeyRepository(schema.url),
    exec: async (sql) => {
      const c = new pg.Client({ connectionString: schema.url });
      await c.connect();
      await c.query(sql);
      await c.end();
    },
    cleanup: async () => schema.drop(),
  },
  {
    name: 'sqlite',
    open: async () => new SqliteKeyRepository(sqlite.file),
    exec: async (sql) => {
      const db = new Database(sqlite.file);
      db.exec(sql);
      db.close();
    },
    cleanup: async () => sqlite.remove(),
  },
];

beforeAll(async () => {
  schema = await createSchema();
});

/** A trigger that makes the revoke step of a rotation fail, for keys named rot-atomic. */
const FAIL_REVOKE = {
  postgres: {
    create: `CREATE FUNCTION fail_revoke() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                 IF NEW.name = 'rot-atomic' AND NEW.revoked_at IS NOT NULL THEN
                   RAISE EXCEPTION 'revoke step failed';
                 END IF;
                 RETURN NEW;
               END $$;
             CREATE TRIGGER fail_revoke BEFORE UPDATE ON api_keys FOR EACH ROW EXECUTE FUNCTION fail_revoke();`,
    drop: 'DROP TRIGGER fail_revoke ON api_keys; DROP FUNCTION fail_revoke();',
  },
  sqlite: {
    create: `CREATE TRIGGER fail_revoke BEFORE UPDATE OF revoked_at ON api_keys
             WHEN NEW.name = 'rot-atomic' AND NEW.revoked_at IS NOT NULL
             BEGIN SELECT RAISE(ABORT, 'revoke step failed'); END;`,
    drop: 'DROP TRIGGER fail_revoke;',
  },
};

describe.each(backends)('key repository contract: $name', (backend) => {
  let repo: KeyRepository;
  beforeAll(async () => {
    repo = await backend.open();
    await repo.migrate();
  });
  afterAll(async () => {
    await repo.close();
    await backend.cleanup();
  });

  it('migrate is idempotent, also concurrently', async () => {
    await Promise.all([repo.migrate(), repo.migrate()]);
    const other = await backend.open();
    await other.migrate();
    await other.close();
  });

  it('stores a key by id with its fields and only the hash', async () => {
    const expiresAt = new Date(Date.now() + 86_400_000);
    const { key, record } = await createKey(repo, SECRET, {
      name: 'acme',
      tier: 'pro',
      roles: ['reader', 'writer'],
      expiresAt,
    });
    expect(key).toMatch(/^gh_[0-9A-Za-z]{12}_[0-9A-Za-z]{43}$/);
    expect(key.startsWith(`gh_${record.id}_`)).toBe(true);
    const stored = await repo.get(record.id);
    expect(stored).not.toBeNull();
    expect(stored!.name).toBe('acme');
    expect(stored!.tier).toBe('pro');
    expect(stored!.roles).toEqual(['reader', 'writer']);
    expect(stored!.hash).toBe(hashKey(SECRET, key));
    expect(stored!.hash).not.toContain(key.split('_')[2]);
    expect(stored!.expiresAt?.getTime()).toBe(expiresAt.getTime());
    expect(stored!.revokedAt).toBeNull();
    expect(stored!.lastUsedAt).toBeNull();
    expect(keyMatches(SECRET, key, stored!.hash)).toBe(true);
    expect(isActive(stored!, Date.now())).toBe(true);
  });

  it('unknown ids are null', async () => {
    expect(await repo.get('AAAAAAAAAAAA')).toBeNull();
    expect(await repo.revoke('AAAAAAAAAAAA')).toBeNull();
  });

  it("instants are the database's: created, expiry from a lifetime, the clock of a read", async () => {
    const dbNow = (await repo.now()).getTime();
    const { record } = await createKey(repo, SECRET, { name: 'db', tier: 'free', lifetimeMs: 90_000 });
    const created = Date.parse(record.createdAt);
    expect(Math.abs(created - dbNow)).toBeLessThan(5_000);
    expect(Date.parse(record.expiresAt!) - created).toBe(90_000);
    const other = await createKey(repo, SECRET, { name: 'db2', tier: 'free' });
    const read = await repo.readMany([record.id, 'AAAAAAAAAAAA', other.record.id]);
    expect(read.records.map((r) => r.id).sort()).toEqual([record.id, other.record.id].sort());
    expect(read.dbTime).toBeGreaterThanOrEqual(created);
    expect(read.dbTime - created).toBeLessThan(5_000);
    const none = await repo.readMany(['AAAAAAAAAAAA']);
    expect(none.records).toEqual([]);
    expect(none.dbTime).toBeGreaterThanOrEqual(read.dbTime);
  });

  it('lists every key, newest first', async () => {
    const a = await createKey(repo, SECRET, { name: 'l1', tier: 'free' }, new Date(Date.now() - 1000));
    const b = await createKey(repo, SECRET, { name: 'l2', tier: 'free' }, new Date(Date.now() + 1000));
    const ids = (await repo.list()).map((k) => k.id);
    expect(ids.indexOf(b.record.id)).toBeLessThan(ids.indexOf(a.record.id));
    expect((await repo.list()).find((k) => k.id === a.record.id)?.roles).toEqual([]);
  });

  it("revoke sets revoked_at to the database's now; an earlier revocation is kept", async () => {
    const { record } = await createKey(repo, SECRET, { name: 'r', tier: 'free' });
    const before = (await repo.now()).getTime();
    const revoked = await repo.revoke(record.id);
    const at = revoked!.revokedAt!.getTime();
    expect(at).toBeGreaterThanOrEqual(before);
    expect(at).toBeLessThanOrEqual((await repo.now()).getTime());
    expect(isActive(revoked!, at)).toBe(false);
    await repo.revoke(record.id);
    expect((await repo.get(record.id))?.revokedAt?.getTime()).toBe(at);
  });

  it('rotate: a new key with the same attributes; the old one valid for the grace period', async () => {
    const { record } = await createKey(repo, SECRET, { name: 'rot', tier: 'pro', roles: ['reader'] });
    const before = (await repo.now()).getTime();
    const rotated = await rotateKey(repo, SECRET, record.id, 60_000);
    if (rotated.kind !== 'rotated') throw new Error(`not rotated: ${rotated.kind}`);
    expect(rotated.record.id).not.toBe(record.id);
    expect(rotated.record).toMatchObject({ name: 'rot', tier: 'pro', roles: ['reader'], revokedAt: null });
    const old = (await repo.get(record.id))!;
    const graceEnd = old.revokedAt!.getTime();
    expect(graceEnd - before).toBeGreaterThanOrEqual(60_000);
    expect(graceEnd - (await repo.now()).getTime()).toBeLessThanOrEqual(60_000);
    expect(rotated.previous.revokedAt).toBe(old.revokedAt!.toISOString());
    expect(isActive(old, graceEnd - 1)).toBe(true);
    expect(isActive(old, graceEnd)).toBe(false);
    // a key in its grace period is not rotated again: rotate its replacement
    const again = await rotateKey(repo, SECRET, record.id, 0);
    expect(again).toMatchObject({ kind: 'refused', reason: 'rotated' });
    // revoking during the grace period ends it; a revoked key cannot be rotated
    await repo.revoke(record.id);
    expect(isActive((await repo.get(record.id))!, (await repo.now()).getTime())).toBe(false);
    expect(await rotateKey(repo, SECRET, record.id, 0)).toMatchObject({ kind: 'refused', reason: 'revoked' });
    expect(await rotateKey(repo, SECRET, 'AAAAAAAAAAAA', 0)).toEqual({ kind: 'not_found' });
  });

  it('rotating an expired key is refused, and creates nothing', async () => {
    const { record } = await createKey(repo, SECRET, {
      name: 'rot-expired',
      tier: 'free',
      expiresAt: new Date(Date.now() - 60_000),
    });
    const r = await rotateKey(repo, SECRET, record.id, 60_000);
    expect(r).toMatchObject({ kind: 'refused', reason: 'expired' });
    if (r.kind === 'refused') expect(r.message).toContain('expired');
    expect((await repo.list()).filter((k) => k.name === 'rot-expired')).toHaveLength(1);
  });

  it('concurrent rotations of one key make one new key', async () => {
    const { record } = await createKey(repo, SECRET, { name: 'rot-race', tier: 'free' });
    const others = await Promise.all(Array.from({ length: 4 }, () => backend.open()));
    try {
      const results = await Promise.all(
        [repo, ...others].map((r) => rotateKey(r, SECRET, record.id, 60_000)),
      );
      expect(results.filter((r) => r.kind === 'rotated')).toHaveLength(1);
      for (const r of results.filter((x) => x.kind !== 'rotated')) {
        expect(r).toMatchObject({ kind: 'refused', reason: 'rotated' });
      }
    } finally {
      await Promise.all(others.map((r) => r.close()));
    }
    // the old key and exactly one replacement
    expect((await repo.list()).filter((k) => k.name === 'rot-race')).toHaveLength(2);
  });

  it('a rotation that fails half-way leaves nothing behind (one transaction)', async () => {
    const { record } = await createKey(repo, SECRET, { name: 'rot-atomic', tier: 'free' });
    await backend.exec(FAIL_REVOKE[backend.name as 'postgres' | 'sqlite'].create);
    try {
      await expect(rotateKey(repo, SECRET, record.id, 60_000)).rejects.toThrow(/revoke step failed/);
    } finally {
      await backend.exec(FAIL_REVOKE[backend.name as 'postgres' | 'sqlite'].drop);
    }
    const keys = (await repo.list()).filter((k) => k.name === 'rot-atomic');
    expect(keys).toHaveLength(1); // no new key that nobody was ever shown
    expect(keys[0]!.revokedAt).toBeNull();
  });

  it('expired keys are inactive', async () => {
    const { record } = await createKey(repo, SECRET, {
      name: 'exp',
      tier: 'free',
      expiresAt: new Date(Date.now() - 1),
    });
    expect(isActive((await repo.get(record.id))!, (await repo.now()).getTime())).toBe(false);
  });

  it('touch records last use in one batch; the latest instant wins', async () => {
    const a = await createKey(repo, SECRET, { name: 't1', tier: 'free' });
    const b = await createKey(repo, SECRET, { name: 't2', tier: 'free' });
    const t1 = new Date(Date.now() - 5000);
    const t2 = new Date(Date.now() - 1000);
    await repo.touch(
      new Map([
        [a.record.id, t2],
        [b.record.id, t1],
        ['AAAAAAAAAAAA', t1],
      ]),
    );
    await repo.touch(new Map([[a.record.id, t1]]));
    expect((await repo.get(a.record.id))?.lastUsedAt?.getTime()).toBe(t2.getTime());
    expect((await repo.get(b.record.id))?.lastUsedAt?.getTime()).toBe(t1.getTime());
    await repo.touch(new Map());
  });

  it('duplicate ids are refused', async () => {
    const { record } = await createKey(repo, SECRET, { name: 'd', tier: 'free' });
    const stored = (await repo.get(record.id))!;
    await expect(repo.insert({ ...stored, hash: 'x' })).rejects.toThrow();
  });

  it('pages newest first with a position that survives ties, filtered by tier, status, name prefix', async () => {
    const at = new Date('2026-01-02T03:04:05.678Z');
    const made: string[] = [];
    // three keys with one creation instant: the id orders them, and no page repeats or skips one
    for (const tier of ['pg-free', 'pg-pro', 'pg-free'])
      made.push((await createKey(repo, SECRET, { name: `pg_%-${made.length}`, tier }, at)).record.id);
    const seen: string[] = [];
    let after: Awaited<ReturnType<KeyRepository['page']>>['next'] | undefined;
    for (let i = 0; i < 5; i++) {
      const page = await repo.page({ limit: 1, after: after ?? undefined, namePrefix: 'pg_%-' });
      seen.push(...page.records.map((r) => r.id));
      after = page.next;
      if (after === null) break;
    }
    expect(seen).toEqual([...made].sort());
    const free = await repo.page({ limit: 10, tier: 'pg-free', namePrefix: 'pg_%-' });
    expect(free.records.map((r) => r.name).sort()).toEqual(['pg_%-0', 'pg_%-2']);
    expect(free.next).toBeNull();
    // the prefix is compared as text: `%` and `_` are no wildcards
    expect((await repo.page({ limit: 10, namePrefix: 'pg__' })).records).toEqual([]);
    expect((await repo.page({ limit: 10, namePrefix: '%' })).records).toEqual([]);
    await repo.revoke(made[0] as string);
    const revoked = await repo.page({ limit: 10, status: 'revoked', namePrefix: 'pg_%-' });
    expect(revoked.records.map((r) => r.id)).toEqual([made[0]]);
    expect((await repo.page({ limit: 10, status: 'active', namePrefix: 'pg_%-' })).records).toHaveLength(2);
    await repo.update(made[1] as string, { expiresAt: new Date(Date.now() - 1000) });
    const expired = await repo.page({ limit: 10, status: 'expired', namePrefix: 'pg_%-' });
    expect(expired.records.map((r) => r.id)).toEqual([made[1]]);
  });

  it('update changes only what it is given, and announces the change', async () => {
    const heard: string[] = [];
    let listeningNow = false;
    const watcher = {
      revoked: (id: string) => heard.push(id),
      // called once the LISTEN is in place
      reset: () => (listeningNow = true),
      alive: () => undefined,
      lost: () => undefined,
    };
    const listening = backend.name === 'postgres' ? await backend.open() : null;
    listening?.watchRevocations?.(watcher);
    const { record } = await createKey(repo, SECRET, { name: 'upd', tier: 'free', roles: ['a'] });
    if (listening !== null) await vi.waitFor(() => expect(listeningNow).toBe(true), { timeout: 5000 });
    const expiresAt = new Date(Date.now() + 3_600_000);
    const updated = await repo.update(record.id, { tier: 'pro', roles: ['b', 'c'], expiresAt });
    expect(updated).toMatchObject({ id: record.id, name: 'upd', tier: 'pro', roles: ['b', 'c'] });
    expect(updated?.expiresAt?.getTime()).toBe(expiresAt.getTime());
    const renamed = await repo.update(record.id, { name: 'upd-2', expiresAt: null });
    expect(renamed).toMatchObject({ name: 'upd-2', tier: 'pro', roles: ['b', 'c'], expiresAt: null });
    expect((await repo.get(record.id))?.hash).toBe((await repo.get(record.id))?.hash);
    expect(await repo.update('AAAAAAAAAAAA', { name: 'x' })).toBeNull();
    if (listening !== null) {
      await vi.waitFor(() => expect(heard.filter((id) => id === record.id)).toHaveLength(2), {
        timeout: 3000,
      });
      await listening.close();
    }
  });
});
