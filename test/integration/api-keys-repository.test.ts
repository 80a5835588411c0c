/** The key repository contract, run on PostgreSQL (private schema) and on SQLite (temp file). */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, rotateKey } from '../../src/auth/api-keys/manage.js';
import { hashKey, keyMatches } from '../../src/auth/api-keys/format.js';
import { isActive, type KeyRepository } from '../../src/stores/database.js';
import { PostgresKeyRepository } from '../../src/stores/postgres-keys.js';
import { SqliteKeyRepository } from '../../src/stores/sqlite-keys.js';
import { createSchema, tempSqliteFile, type PrivateSchema } from './api-keys-db.js';

const SECRET = 'contract-test-secret-0123456789';

type Backend = { name: string; open(): Promise<KeyRepository>; cleanup(): Promise<void> };

let schema: PrivateSchema;
const sqlite = tempSqliteFile();

const backends: Backend[] = [
  {
    name: 'postgres',
    open: async () => new PostgresKeyRepository(schema.url),
    cleanup: async () => schema.drop(),
  },
  {
    name: 'sqlite',
    open: async () => new SqliteKeyRepository(sqlite.file),
    cleanup: async () => sqlite.remove(),
  },
];

beforeAll(async () => {
  schema = await createSchema();
});

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
    expect(await repo.revoke('AAAAAAAAAAAA', new Date())).toBeNull();
  });

  it('lists every key, newest first', async () => {
    const a = await createKey(repo, SECRET, { name: 'l1', tier: 'free' }, new Date(Date.now() - 1000));
    const b = await createKey(repo, SECRET, { name: 'l2', tier: 'free' }, new Date(Date.now() + 1000));
    const ids = (await repo.list()).map((k) => k.id);
    expect(ids.indexOf(b.record.id)).toBeLessThan(ids.indexOf(a.record.id));
    expect((await repo.list()).find((k) => k.id === a.record.id)?.roles).toEqual([]);
  });

  it('revoke sets revoked_at; an earlier revocation is kept', async () => {
    const { record } = await createKey(repo, SECRET, { name: 'r', tier: 'free' });
    const now = new Date();
    const revoked = await repo.revoke(record.id, now);
    expect(revoked?.revokedAt?.getTime()).toBe(now.getTime());
    expect(isActive(revoked!, now.getTime())).toBe(false);
    await repo.revoke(record.id, new Date(now.getTime() + 60_000));
    expect((await repo.get(record.id))?.revokedAt?.getTime()).toBe(now.getTime());
  });

  it('rotate: a new key with the same attributes; the old one valid for the grace period', async () => {
    const { record } = await createKey(repo, SECRET, { name: 'rot', tier: 'pro', roles: ['reader'] });
    const now = new Date();
    const rotated = await rotateKey(repo, SECRET, record.id, 60_000, now);
    expect(rotated).not.toBeNull();
    expect(rotated!.record.id).not.toBe(record.id);
    expect(rotated!.record).toMatchObject({ name: 'rot', tier: 'pro', roles: ['reader'] });
    const old = (await repo.get(record.id))!;
    expect(old.revokedAt?.getTime()).toBe(now.getTime() + 60_000);
    expect(isActive(old, now.getTime() + 59_000)).toBe(true);
    expect(isActive(old, now.getTime() + 60_000)).toBe(false);
    // revoking during the grace period ends it
    await repo.revoke(record.id, now);
    expect(isActive((await repo.get(record.id))!, now.getTime() + 1)).toBe(false);
    // a revoked key cannot be rotated
    expect(await rotateKey(repo, SECRET, record.id, 0, new Date(now.getTime() + 1))).toBeNull();
  });

  it('expired keys are inactive', async () => {
    const { record } = await createKey(repo, SECRET, {
      name: 'exp',
      tier: 'free',
      expiresAt: new Date(Date.now() - 1),
    });
    expect(isActive((await repo.get(record.id))!, Date.now())).toBe(false);
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
});
