/** `gatehouse keys ...` and `gatehouse migrate` as real processes (run `npm run build` first). */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keyMatches } from '../../src/auth/api-keys/format.js';
import { isActive, type KeyRepository } from '../../src/stores/database.js';
import { PostgresKeyRepository } from '../../src/stores/postgres-keys.js';
import { SqliteKeyRepository } from '../../src/stores/sqlite-keys.js';
import { createKey } from '../../src/auth/api-keys/manage.js';
import { faketimeEnv } from '../helpers/faketime.js';
import { spawnCli, writeTempConfig } from '../helpers/process.js';
import { createSchema, tempSqliteFile, type PrivateSchema } from './api-keys-db.js';

const SECRET = 'cli-test-secret-0123456789abcdef';

async function cli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | string; out: string }> {
  const p = spawnCli(args, env);
  const code = await p.exited;
  return { code, out: p.output() };
}

const configYaml = (database: string, extra = '') => `
database: ${database}
auth: { apiKey: { secret: '${SECRET}' } }
services: { a: { targets: ['http://127.0.0.1:1'] } }
routes: [ { name: r, match: { path: /x }, service: a, auth: [apiKey] } ]
${extra}`;

type Backend = {
  name: string;
  setup(): Promise<{ database: string; repo: () => KeyRepository }>;
  cleanup(): Promise<void>;
};

let schema: PrivateSchema | undefined;
const sqlite = tempSqliteFile();
const backends: Backend[] = [
  {
    name: 'postgres',
    async setup() {
      schema = await createSchema();
      const url = schema.url;
      return { database: `{ url: '${url}' }`, repo: () => new PostgresKeyRepository(url) };
    },
    cleanup: async () => schema?.drop(),
  },
  {
    name: 'sqlite',
    async setup() {
      return { database: `{ file: '${sqlite.file}' }`, repo: () => new SqliteKeyRepository(sqlite.file) };
    },
    cleanup: async () => sqlite.remove(),
  },
];

describe.each(backends)('gatehouse keys on $name', (backend) => {
  let config: string;
  let repo: KeyRepository;
  beforeAll(async () => {
    const s = await backend.setup();
    config = writeTempConfig(configYaml(s.database));
    const m = await cli(['migrate', '-c', config]);
    expect(m.code).toBe(0);
    repo = s.repo();
  });
  afterAll(async () => {
    await repo?.close();
    await backend.cleanup();
  });

  it('create prints the key once; list, rotate, revoke', async () => {
    const created = await cli([
      'keys',
      'create',
      '--name',
      'acme',
      '--tier',
      'pro',
      '--roles',
      'reader,writer',
      '--expires',
      '90d',
      '-c',
      config,
    ]);
    expect(created.code).toBe(0);
    const key = /gh_[0-9A-Za-z]{12}_[0-9A-Za-z]{43}/.exec(created.out)?.[0];
    expect(key).toBeDefined();
    const id = key!.slice(3, 15);
    const stored = (await repo.get(id))!;
    expect(stored).toMatchObject({ name: 'acme', tier: 'pro', roles: ['reader', 'writer'] });
    expect(keyMatches(SECRET, key!, stored.hash)).toBe(true);
    const days = (stored.expiresAt!.getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(89.9);
    expect(days).toBeLessThan(90.1);

    const list = await cli(['keys', 'list', '-c', config]);
    expect(list.code).toBe(0);
    expect(list.out).toContain(id);
    expect(list.out).toContain('active');
    expect(list.out).not.toContain(key!.slice(16));
    expect(list.out).not.toContain(stored.hash);
    const json = await cli(['keys', 'list', '--json', '-c', config]);
    expect(json.out).not.toContain(stored.hash);
    expect(json.out).not.toContain(key!.slice(16));

    const rotated = await cli(['keys', 'rotate', id, '--grace', '1h', '-c', config]);
    expect(rotated.code).toBe(0);
    const newKey = /gh_[0-9A-Za-z]{12}_[0-9A-Za-z]{43}/.exec(rotated.out)?.[0];
    expect(newKey).toBeDefined();
    expect(newKey).not.toBe(key);
    const old = (await repo.get(id))!;
    expect(isActive(old, Date.now())).toBe(true);
    expect(isActive(old, Date.now() + 3_600_001)).toBe(false);
    const fresh = (await repo.get(newKey!.slice(3, 15)))!;
    expect(fresh).toMatchObject({ name: 'acme', tier: 'pro', roles: ['reader', 'writer'] });
    expect(keyMatches(SECRET, newKey!, fresh.hash)).toBe(true);

    const revoked = await cli(['keys', 'revoke', id, '-c', config]);
    expect(revoked.code).toBe(0);
    expect(isActive((await repo.get(id))!, Date.now())).toBe(false);
    expect((await cli(['keys', 'list', '-c', config])).out).toMatch(new RegExp(`${id}.*revoked`));
  });

  it('errors are clear and exit 1', async () => {
    const unknown = await cli(['keys', 'revoke', 'AAAAAAAAAAAA', '-c', config]);
    expect(unknown.code).toBe(1);
    expect(unknown.out).toContain('no key AAAAAAAAAAAA');
    const badDuration = await cli([
      'keys',
      'create',
      '--name',
      'n',
      '--tier',
      't',
      '--expires',
      'soon',
      '-c',
      config,
    ]);
    expect(badDuration.code).toBe(1);
    expect(badDuration.out).toContain('--expires');
    const missing = await cli(['keys', 'create', '--tier', 't', '-c', config]);
    expect(missing.code).not.toBe(0);
    expect(missing.out).toContain('--name');
    expect((await cli(['keys', 'rotate', 'AAAAAAAAAAAA', '-c', config])).code).toBe(1);
  });

  it('rotate refuses an expired key and a key already rotated', async () => {
    const expired = await createKey(repo, SECRET, {
      name: 'cli-expired',
      tier: 'free',
      expiresAt: new Date(Date.now() - 60_000),
    });
    const r = await cli(['keys', 'rotate', expired.record.id, '-c', config]);
    expect(r.code).toBe(1);
    expect(r.out).toContain(`key ${expired.record.id} expired at`);
    expect(r.out).not.toMatch(/gh_[0-9A-Za-z]{12}_/);
    expect((await repo.list()).filter((k) => k.name === 'cli-expired')).toHaveLength(1);
    const live = await createKey(repo, SECRET, { name: 'cli-twice', tier: 'free' });
    expect((await cli(['keys', 'rotate', live.record.id, '-c', config])).code).toBe(0);
    const twice = await cli(['keys', 'rotate', live.record.id, '-c', config]);
    expect(twice.code).toBe(1);
    expect(twice.out).toContain('already rotated');
  });

  it('rotate --grace 0 revokes the old key at once (zero needs no unit)', async () => {
    const live = await createKey(repo, SECRET, { name: 'cli-grace-0', tier: 'free' });
    const rotated = await cli(['keys', 'rotate', live.record.id, '--grace', '0', '-c', config]);
    expect(rotated.code).toBe(0);
    expect(rotated.out).toContain(`replaces ${live.record.id}, which is revoked now`);
    const newKey = /gh_[0-9A-Za-z]{12}_[0-9A-Za-z]{43}/.exec(rotated.out)?.[0];
    expect(newKey).toBeDefined();
    const old = (await repo.get(live.record.id))!;
    expect(old.revokedAt).not.toBeNull();
    expect(isActive(old, (await repo.now()).getTime())).toBe(false);
    expect(isActive((await repo.get(newKey!.slice(3, 15)))!, Date.now())).toBe(true);
    expect((await cli(['keys', 'list', '-c', config])).out).toMatch(
      new RegExp(`${live.record.id}.* revoked\\n`),
    );
    // a bare number other than 0 stays ambiguous (hours? milliseconds?) and is refused
    const other = await createKey(repo, SECRET, { name: 'cli-grace-24', tier: 'free' });
    const ambiguous = await cli(['keys', 'rotate', other.record.id, '--grace', '24', '-c', config]);
    expect(ambiguous.code).toBe(1);
    expect(ambiguous.out).toContain('--grace: invalid duration "24"');
    expect((await repo.get(other.record.id))!.revokedAt).toBeNull();
  });

  // SQLite's clock is the process's own (one host): a skewed CLI is a PostgreSQL question
  it.skipIf(backend.name !== 'postgres')("a CLI whose clock is 30 s off uses the database's", async () => {
    const created = await cli(
      ['keys', 'create', '--name', 'skew', '--tier', 'free', '--expires', '1h', '-c', config],
      faketimeEnv('-30s'),
    );
    expect(created.code).toBe(0);
    const id = /gh_([0-9A-Za-z]{12})_/.exec(created.out)![1]!;
    const stored = (await repo.get(id))!;
    expect(Math.abs(stored.createdAt.getTime() - (await repo.now()).getTime())).toBeLessThan(5_000);
    expect(stored.expiresAt!.getTime() - stored.createdAt.getTime()).toBe(3_600_000);

    const before = (await repo.now()).getTime();
    expect((await cli(['keys', 'revoke', id, '-c', config], faketimeEnv('+30s'))).code).toBe(0);
    const revokedAt = (await repo.get(id))!.revokedAt!.getTime();
    expect(revokedAt).toBeGreaterThanOrEqual(before);
    expect(revokedAt).toBeLessThanOrEqual((await repo.now()).getTime());
    // a CLI 30 s behind shows it revoked, not "grace until" its own clock catches up
    const listed = await cli(['keys', 'list', '-c', config], faketimeEnv('-30s'));
    const line = listed.out.split('\n').find((l) => l.startsWith(id)) ?? '';
    expect(line).toMatch(/ revoked$/);

    const other = await createKey(repo, SECRET, { name: 'skew-rot', tier: 'free' });
    const rotated = await cli(
      ['keys', 'rotate', other.record.id, '--grace', '1h', '-c', config],
      faketimeEnv('+30s'),
    );
    expect(rotated.code).toBe(0);
    const graceEnd = (await repo.get(other.record.id))!.revokedAt!.getTime();
    expect(Math.abs(graceEnd - 3_600_000 - (await repo.now()).getTime())).toBeLessThan(5_000);
  });
});

describe('gatehouse keys: configuration checks', () => {
  it('refuses a tier or role the config does not define, and a missing secret', async () => {
    const db = tempSqliteFile();
    try {
      const config = writeTempConfig(
        configYaml(
          `{ file: '${db.file}' }`,
          'rbac: { roles: { reader: [orders:read] } }\nrateLimit: { tiers: { free: { limits: [{ requests: 1, per: 1s }] } } }',
        ),
      );
      const tier = await cli(['keys', 'create', '--name', 'n', '--tier', 'gold', '-c', config]);
      expect(tier.code).toBe(1);
      expect(tier.out).toContain('unknown tier "gold"');
      const role = await cli([
        'keys',
        'create',
        '--name',
        'n',
        '--tier',
        'free',
        '--roles',
        'boss',
        '-c',
        config,
      ]);
      expect(role.code).toBe(1);
      expect(role.out).toContain('unknown role(s) boss');
      const ok = await cli([
        'keys',
        'create',
        '--name',
        'n',
        '--tier',
        'free',
        '--roles',
        'reader',
        '-c',
        config,
      ]);
      expect(ok.code).toBe(0);
      const noSecret = writeTempConfig(`database: { file: '${db.file}' }\n`);
      const refused = await cli(['keys', 'create', '--name', 'n', '--tier', 'free', '-c', noSecret]);
      expect(refused.code).toBe(1);
      expect(refused.out).toContain('auth.apiKey.secret');
    } finally {
      db.remove();
    }
  });
});
