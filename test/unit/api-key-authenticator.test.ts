/** The API key authenticator against an in-memory repository: cache, store failures, last use. */
import type { IncomingMessage } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiKeyAuthenticator, type ApiKeyAuthOptions } from '../../src/auth/api-keys/authenticator.js';
import { generateKey, hashKey } from '../../src/auth/api-keys/format.js';
import type { AuthAttempt } from '../../src/auth/types.js';
import { silentLogger } from '../../src/observability/logger.js';
import type { ApiKeyRecord, KeyRepository, NewApiKey } from '../../src/stores/database.js';

const SECRET = 'unit-secret-0123456789abcdef';

class FakeRepo implements KeyRepository {
  readonly kind = 'sqlite';
  readonly keys = new Map<string, ApiKeyRecord>();
  gets = 0;
  touches: Array<Map<string, Date>> = [];
  down = false;
  delay = 0;
  async migrate() {}
  async insert(k: NewApiKey) {
    this.keys.set(k.id, { ...k, revokedAt: null, lastUsedAt: null });
  }
  async get(id: string) {
    this.gets++;
    if (this.delay) await new Promise((r) => setTimeout(r, this.delay));
    if (this.down) throw new Error('connect ECONNREFUSED');
    return this.keys.get(id) ?? null;
  }
  async list() {
    return [...this.keys.values()];
  }
  async revoke(id: string, at: Date) {
    const k = this.keys.get(id);
    if (!k) return null;
    const r = { ...k, revokedAt: at };
    this.keys.set(id, r);
    return r;
  }
  async touch(used: ReadonlyMap<string, Date>) {
    if (this.down) throw new Error('down');
    this.touches.push(new Map(used));
  }
  async close() {}
}

const authenticators: ApiKeyAuthenticator[] = [];
afterEach(async () => {
  await Promise.all(authenticators.splice(0).map((a) => a.close()));
});

function setup(options: ApiKeyAuthOptions = {}) {
  const repo = new FakeRepo();
  const auth = new ApiKeyAuthenticator({ header: 'x-api-key', secret: SECRET }, repo, silentLogger(), {
    flushInterval: 60_000,
    ...options,
  });
  authenticators.push(auth);
  const add = async (over: Partial<ApiKeyRecord> = {}) => {
    const { id, key } = generateKey();
    await repo.insert({
      id,
      name: 'n',
      tier: 'pro',
      roles: ['reader'],
      hash: hashKey(SECRET, key),
      createdAt: new Date(),
      expiresAt: null,
    });
    if (over.revokedAt || over.expiresAt) repo.keys.set(id, { ...repo.keys.get(id)!, ...over });
    return { id, key };
  };
  const call = (headers: Record<string, string | string[]>): Promise<AuthAttempt> =>
    Promise.resolve(auth.authenticate({ headers } as unknown as IncomingMessage));
  return { repo, auth, add, call };
}

describe('ApiKeyAuthenticator', () => {
  it('absent without the header; malformed keys need no lookup', async () => {
    const { repo, call } = setup();
    expect((await call({})).kind).toBe('absent');
    expect((await call({ 'x-api-key': 'nope' })).kind).toBe('invalid');
    expect((await call({ 'x-api-key': ['a', 'b'] })).kind).toBe('invalid');
    expect(repo.gets).toBe(0);
  });

  it('a valid key: the consumer; cached (one lookup for many requests)', async () => {
    const { repo, add, call } = setup();
    const { id, key } = await add();
    const results = await Promise.all(Array.from({ length: 20 }, () => call({ 'x-api-key': key })));
    for (const r of results)
      expect(r).toEqual({ kind: 'ok', consumer: { id, tier: 'pro', roles: ['reader'] } });
    expect(repo.gets).toBe(1); // single flight
    await call({ 'x-api-key': key });
    expect(repo.gets).toBe(1);
  });

  it('wrong secret, another key id, revoked, expired: invalid', async () => {
    const { add, call } = setup();
    const a = await add();
    const b = await add();
    const wrong = a.key.slice(0, -1) + (a.key.endsWith('x') ? 'y' : 'x');
    const swapped = `gh_${b.id}_${a.key.slice(16)}`;
    const revoked = await add({ revokedAt: new Date(Date.now() - 1) });
    const expired = await add({ expiresAt: new Date(Date.now() - 1) });
    const grace = await add({ revokedAt: new Date(Date.now() + 60_000) });
    expect((await call({ 'x-api-key': wrong })).kind).toBe('invalid');
    expect((await call({ 'x-api-key': swapped })).kind).toBe('invalid');
    expect((await call({ 'x-api-key': revoked.key })).kind).toBe('invalid');
    expect((await call({ 'x-api-key': expired.key })).kind).toBe('invalid');
    expect((await call({ 'x-api-key': grace.key })).kind).toBe('ok');
    const reasons = await Promise.all([wrong, swapped, revoked.key].map((k) => call({ 'x-api-key': k })));
    for (const r of reasons) expect(JSON.stringify(r)).not.toContain('gh_');
  });

  it('unknown ids are cached negatively', async () => {
    const { repo, call } = setup({ negativeTtl: 60_000 });
    const { key } = generateKey();
    for (let i = 0; i < 5; i++) expect((await call({ 'x-api-key': key })).kind).toBe('invalid');
    expect(repo.gets).toBe(1);
  });

  it('store down: cached keys work, uncached ones are unavailable, then recovery', async () => {
    const { repo, add, call } = setup({ cacheTtl: 1, retryAfter: 50 });
    const cached = await add();
    const uncached = await add();
    expect((await call({ 'x-api-key': cached.key })).kind).toBe('ok');
    repo.down = true;
    await new Promise((r) => setTimeout(r, 5)); // the entry is past its TTL
    expect((await call({ 'x-api-key': cached.key })).kind).toBe('ok');
    expect((await call({ 'x-api-key': uncached.key })).kind).toBe('unavailable');
    // a wrong secret for a cached id is still invalid, not ok
    expect((await call({ 'x-api-key': cached.key.slice(0, -1) + '0' })).kind).not.toBe('ok');
    // fail fast: no lookup while the store was just seen down
    const gets = repo.gets;
    expect((await call({ 'x-api-key': uncached.key })).kind).toBe('unavailable');
    expect(repo.gets).toBe(gets);
    repo.down = false;
    expect((await call({ 'x-api-key': uncached.key })).kind).toBe('unavailable');
    await new Promise((r) => setTimeout(r, 60));
    expect((await call({ 'x-api-key': uncached.key })).kind).toBe('ok');
  });

  it('past maxStale, a cached key is unavailable while the store is down', async () => {
    const { repo, add, call } = setup({ cacheTtl: 1, maxStale: 10 });
    const k = await add();
    expect((await call({ 'x-api-key': k.key })).kind).toBe('ok');
    repo.down = true;
    await new Promise((r) => setTimeout(r, 20));
    expect((await call({ 'x-api-key': k.key })).kind).toBe('unavailable');
  });

  it('invalidate drops a key at once; invalidateAll keeps records for the fallback', async () => {
    const { repo, auth, add, call } = setup();
    const k = await add();
    expect((await call({ 'x-api-key': k.key })).kind).toBe('ok');
    await repo.revoke(k.id, new Date());
    expect((await call({ 'x-api-key': k.key })).kind).toBe('ok'); // cached
    auth.invalidate(k.id);
    expect((await call({ 'x-api-key': k.key })).kind).toBe('invalid');
    const other = await add();
    expect((await call({ 'x-api-key': other.key })).kind).toBe('ok');
    auth.invalidateAll();
    repo.down = true;
    expect((await call({ 'x-api-key': other.key })).kind).toBe('ok');
  });

  it('a lookup in flight during an invalidation does not refill the cache', async () => {
    const { repo, auth, add, call } = setup();
    const k = await add();
    repo.delay = 20;
    const pending = call({ 'x-api-key': k.key });
    auth.invalidate(k.id);
    await pending;
    repo.delay = 0;
    const before = repo.gets;
    await call({ 'x-api-key': k.key });
    expect(repo.gets).toBe(before + 1);
  });

  it('last use is batched: never written on the request path', async () => {
    const { repo, auth, add, call } = setup();
    const a = await add();
    const b = await add();
    for (let i = 0; i < 10; i++) {
      await call({ 'x-api-key': a.key });
      await call({ 'x-api-key': b.key });
    }
    expect(repo.touches).toHaveLength(0);
    await auth.flush();
    expect(repo.touches).toHaveLength(1);
    expect([...repo.touches[0]!.keys()].sort()).toEqual([a.id, b.id].sort());
    await auth.flush();
    expect(repo.touches).toHaveLength(1); // nothing new
    await call({ 'x-api-key': a.key });
    repo.down = true;
    await auth.flush(); // kept for the next try
    repo.down = false;
    await auth.flush();
    expect(repo.touches).toHaveLength(2);
    expect([...repo.touches[1]!.keys()]).toEqual([a.id]);
  });

  it('the cache is bounded', async () => {
    const { repo, add, call } = setup({ maxEntries: 3 });
    const keys = [await add(), await add(), await add(), await add()];
    for (const k of keys) await call({ 'x-api-key': k.key });
    expect(repo.gets).toBe(4);
    await call({ 'x-api-key': keys[0]!.key }); // evicted: looked up again
    expect(repo.gets).toBe(5);
  });

  it('a store that cannot be opened makes every lookup unavailable', async () => {
    const auth = new ApiKeyAuthenticator(
      { header: 'x-api-key', secret: SECRET },
      Promise.reject(new Error('cannot open')),
      silentLogger(),
    );
    authenticators.push(auth);
    await auth.ready();
    const r = await auth.authenticate({
      headers: { 'x-api-key': generateKey().key },
    } as unknown as IncomingMessage);
    expect(r.kind).toBe('unavailable');
  });
});
