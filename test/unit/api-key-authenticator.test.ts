/**
 * The API key authenticator against an in-memory repository, on an injected monotonic clock:
 * cache and negative cache, store failures and the fail-fast probe, batched and capped lookups,
 * invalidations racing lookups, the revocation listener's confirmation, the database's clock.
 */
import type { IncomingMessage } from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ApiKeyAuthenticator, type ApiKeyAuthOptions } from '../../src/auth/api-keys/authenticator.js';
import { generateKey, hashKey } from '../../src/auth/api-keys/format.js';
import type { AuthAttempt } from '../../src/auth/types.js';
import { silentLogger } from '../../src/observability/logger.js';
import type {
  ApiKeyRecord,
  KeyReads,
  KeyRepository,
  NewApiKey,
  RevocationWatcher,
  RotationResult,
} from '../../src/stores/database.js';
import { clockAt } from '../helpers/clock.js';

const SECRET = 'unit-secret-0123456789abcdef';
/** the database's clock when the test's monotonic clock is 0 */
const DB_EPOCH = Date.UTC(2030, 0, 1);

/** A monotonic clock the test moves; the fake database's clock moves with it. */
class TestClock {
  now = 1_000;
  advance(ms: number) {
    this.now += ms;
  }
  get db(): number {
    return DB_EPOCH + this.now;
  }
}

class FakeRepo implements KeyRepository {
  kind: 'sqlite' | 'postgres';
  readonly keys = new Map<string, ApiKeyRecord>();
  /** reads made (one per SELECT, whatever the number of ids) and the ids of each */
  readonly reads: string[][] = [];
  touches: Array<Map<string, Date>> = [];
  down = false;
  /** reads wait until released (a slow or hung database) */
  private held: Array<() => void> | null = null;

  constructor(private readonly clock: TestClock) {
    this.kind = 'sqlite';
  }

  hold(): void {
    this.held ??= [];
  }
  /** lets the held reads go on (in order), and the following ones run at once */
  release(): void {
    const held = this.held ?? [];
    this.held = null;
    for (const go of held) go();
  }
  get waiting(): number {
    return this.held?.length ?? 0;
  }

  async migrate() {}
  async insert(k: NewApiKey): Promise<ApiKeyRecord> {
    const r: ApiKeyRecord = {
      id: k.id,
      name: k.name,
      tier: k.tier,
      roles: k.roles,
      hash: k.hash,
      createdAt: new Date(this.clock.db),
      expiresAt: k.expiresAt ?? null,
      revokedAt: null,
      lastUsedAt: null,
    };
    this.keys.set(k.id, r);
    return r;
  }
  private async gate(ids: string[]): Promise<void> {
    this.reads.push(ids);
    if (this.held) await new Promise<void>((go) => this.held!.push(go));
    if (this.down) throw new Error('connect ECONNREFUSED');
  }
  // like a database, a read sees the data (and the clock) of when it started
  async get(id: string) {
    const found = this.keys.get(id) ?? null;
    await this.gate([id]);
    return found;
  }
  async readMany(ids: readonly string[]): Promise<KeyReads> {
    const dbTime = this.clock.db;
    const records = ids.flatMap((id) => this.keys.get(id) ?? []);
    await this.gate([...ids]);
    return { records, dbTime };
  }
  async list() {
    return [...this.keys.values()];
  }
  async page(): Promise<never> {
    throw new Error('not used by the authenticator');
  }
  async update(): Promise<never> {
    throw new Error('not used by the authenticator');
  }
  async now() {
    return new Date(this.clock.db);
  }
  async revoke(id: string) {
    return this.set(id, { revokedAt: new Date(this.clock.db) });
  }
  async rotate(): Promise<RotationResult> {
    throw new Error('not used here');
  }
  set(id: string, over: Partial<ApiKeyRecord>): ApiKeyRecord | null {
    const k = this.keys.get(id);
    if (!k) return null;
    const r = { ...k, ...over };
    this.keys.set(id, r);
    return r;
  }
  async touch(used: ReadonlyMap<string, Date>) {
    if (this.down) throw new Error('down');
    this.touches.push(new Map(used));
  }
  async close() {}
}

/** PostgreSQL-like: revocations are broadcast (the test plays the listener). */
class BroadcastRepo extends FakeRepo {
  watcher: RevocationWatcher | null = null;
  constructor(clock: TestClock) {
    super(clock);
    this.kind = 'postgres';
  }
  watchRevocations(watcher: RevocationWatcher) {
    this.watcher = watcher;
  }
}

const authenticators: ApiKeyAuthenticator[] = [];
afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(authenticators.splice(0).map((a) => a.close()));
});

function setup<R extends FakeRepo = FakeRepo>(
  options: ApiKeyAuthOptions = {},
  Repo: new (clock: TestClock) => R = FakeRepo as new (clock: TestClock) => R,
) {
  const clock = new TestClock();
  const repo = new Repo(clock);
  const auth = new ApiKeyAuthenticator({ header: 'x-api-key', secret: SECRET }, repo, silentLogger(), {
    flushInterval: 60_000,
    clock: clockAt(() => clock.now),
    ...options,
  });
  authenticators.push(auth);
  const add = async (over: Partial<ApiKeyRecord> = {}) => {
    const { id, key } = generateKey();
    await repo.insert({ id, name: 'n', tier: 'pro', roles: ['reader'], hash: hashKey(SECRET, key) });
    repo.set(id, over);
    return { id, key };
  };
  const call = (key: string | string[] | undefined): Promise<AuthAttempt> =>
    Promise.resolve(
      auth.authenticate({
        headers: key === undefined ? {} : { 'x-api-key': key },
      } as unknown as IncomingMessage),
    );
  /** lets pending promise callbacks run (no time passes) */
  const settle = () => new Promise((r) => setImmediate(r));
  return { clock, repo, auth, add, call, settle };
}

describe('ApiKeyAuthenticator', () => {
  it('absent without the header; malformed keys need no lookup', async () => {
    const { repo, call } = setup();
    expect((await call(undefined)).kind).toBe('absent');
    expect((await call('nope')).kind).toBe('invalid');
    expect((await call(['a', 'b'])).kind).toBe('invalid');
    expect(repo.reads).toHaveLength(0);
  });

  it('a valid key: the consumer; cached (one lookup for many requests)', async () => {
    const { repo, add, call } = setup();
    const { id, key } = await add();
    const results = await Promise.all(Array.from({ length: 20 }, () => call(key)));
    for (const r of results)
      expect(r).toEqual({ kind: 'ok', consumer: { id, tier: 'pro', roles: ['reader'] } });
    expect(repo.reads).toHaveLength(1); // single flight
    await call(key);
    expect(repo.reads).toHaveLength(1);
  });

  it('wrong secret, another key id, revoked, expired: invalid; in its grace period: ok', async () => {
    const { clock, add, call } = setup();
    const a = await add();
    const b = await add();
    const wrong = a.key.slice(0, -1) + (a.key.endsWith('x') ? 'y' : 'x');
    const swapped = `gh_${b.id}_${a.key.slice(16)}`;
    const revoked = await add({ revokedAt: new Date(clock.db - 1) });
    const expired = await add({ expiresAt: new Date(clock.db - 1) });
    const grace = await add({ revokedAt: new Date(clock.db + 60_000) });
    expect((await call(wrong)).kind).toBe('invalid');
    expect((await call(swapped)).kind).toBe('invalid');
    expect((await call(revoked.key)).kind).toBe('invalid');
    expect((await call(expired.key)).kind).toBe('invalid');
    expect((await call(grace.key)).kind).toBe('ok');
    const reasons = await Promise.all([wrong, swapped, revoked.key].map((k) => call(k)));
    for (const r of reasons) expect(JSON.stringify(r)).not.toContain('gh_');
  });

  it('unknown ids are cached negatively, for negativeTtl', async () => {
    const { clock, repo, call } = setup({ negativeTtl: 5_000 });
    const { key } = generateKey();
    for (let i = 0; i < 5; i++) expect((await call(key)).kind).toBe('invalid');
    expect(repo.reads).toHaveLength(1);
    clock.advance(5_000);
    expect((await call(key)).kind).toBe('invalid');
    expect(repo.reads).toHaveLength(2);
  });

  it('store down: cached keys work, uncached ones are unavailable, then recovery', async () => {
    const { clock, repo, add, call } = setup({ cacheTtl: 1_000, retryAfter: 1_000 });
    const cached = await add();
    const uncached = await add();
    expect((await call(cached.key)).kind).toBe('ok');
    repo.down = true;
    clock.advance(2_000); // past the TTL: looked up, the store fails, the record answers
    expect((await call(cached.key)).kind).toBe('ok');
    expect((await call(uncached.key)).kind).toBe('unavailable');
    // a wrong secret for a cached id is still invalid, not ok (the last character changed, never
    // to itself: a key that already ended in the replacement made this test pass a right key)
    const wrong = cached.key.slice(0, -1) + (cached.key.endsWith('0') ? '1' : '0');
    expect((await call(wrong)).kind).not.toBe('ok');
    // fail fast: no lookup while the store was just seen down
    const reads = repo.reads.length;
    expect((await call(uncached.key)).kind).toBe('unavailable');
    expect(repo.reads).toHaveLength(reads);
    repo.down = false;
    expect((await call(uncached.key)).kind).toBe('unavailable');
    clock.advance(1_000);
    expect((await call(uncached.key)).kind).toBe('ok');
  });

  it('past maxStale, a cached key is unavailable while the store is down', async () => {
    const { clock, repo, add, call } = setup({ cacheTtl: 1_000, maxStale: 10_000 });
    const k = await add();
    expect((await call(k.key)).kind).toBe('ok');
    repo.down = true;
    clock.advance(10_000);
    expect((await call(k.key)).kind).toBe('unavailable');
  });

  it('invalidate drops a key at once; invalidateAll keeps records for the fallback', async () => {
    const { repo, auth, add, call } = setup();
    const k = await add();
    expect((await call(k.key)).kind).toBe('ok');
    await repo.revoke(k.id);
    expect((await call(k.key)).kind).toBe('ok'); // cached
    auth.invalidate(k.id);
    expect((await call(k.key)).kind).toBe('invalid');
    const other = await add();
    expect((await call(other.key)).kind).toBe('ok');
    auth.invalidateAll();
    repo.down = true;
    expect((await call(other.key)).kind).toBe('ok');
  });

  it('a lookup in flight during an invalidation of its id does not refill the cache', async () => {
    const { repo, auth, add, call, settle } = setup();
    const k = await add();
    repo.hold();
    const pending = call(k.key);
    await settle();
    auth.invalidate(k.id);
    repo.release();
    await pending;
    const before = repo.reads.length;
    await call(k.key);
    expect(repo.reads).toHaveLength(before + 1);
  });

  it('a lookup decides on what it read, even when another id is invalidated meanwhile', async () => {
    const { repo, auth, add, call, settle } = setup();
    const k = await add();
    expect((await call(k.key)).kind).toBe('ok');
    await repo.revoke(k.id); // its notice is lost, the listener reconnects: re-read every record
    auth.invalidateAll();
    repo.hold();
    const pending = call(k.key);
    await settle();
    auth.invalidate('AAAAAAAAAAAA'); // another key's revocation, during the lookup
    repo.release();
    expect((await pending).kind).toBe('invalid'); // not the old cached "ok"
  });

  it('a request after a revocation notice never joins a lookup started before it', async () => {
    const { repo, auth, add, call, settle } = setup();
    const k = await add();
    repo.hold();
    const early = call(k.key); // its lookup starts before the revocation
    await settle();
    expect(repo.waiting).toBe(1);
    await repo.revoke(k.id);
    auth.invalidate(k.id); // the notice
    const late = call(k.key);
    await settle();
    repo.release();
    expect((await early).kind).toBe('ok'); // asked before the notice: what its read said then
    expect((await late).kind).toBe('invalid');
    expect(repo.reads).toHaveLength(2);
  });

  it('last use is batched: never written on the request path; instants of the database clock', async () => {
    const { clock, repo, auth, add, call } = setup();
    const a = await add();
    const b = await add();
    for (let i = 0; i < 10; i++) {
      await call(a.key);
      await call(b.key);
    }
    expect(repo.touches).toHaveLength(0);
    clock.advance(250);
    await call(a.key);
    await auth.flush();
    expect(repo.touches).toHaveLength(1);
    expect([...repo.touches[0]!.keys()].sort()).toEqual([a.id, b.id].sort());
    expect(repo.touches[0]!.get(a.id)?.getTime()).toBe(clock.db);
    await auth.flush();
    expect(repo.touches).toHaveLength(1); // nothing new
    await call(a.key);
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
    for (const k of keys) await call(k.key);
    expect(repo.reads).toHaveLength(4);
    await call(keys[0]!.key); // evicted: looked up again
    expect(repo.reads).toHaveLength(5);
  });

  it('made-up ids never push known keys out (they answer while the store is down)', async () => {
    const { clock, repo, add, call } = setup({ maxEntries: 3, maxUnknown: 50, cacheTtl: 1_000 });
    const keys = [await add(), await add(), await add()];
    for (const k of keys) expect((await call(k.key)).kind).toBe('ok');
    for (let i = 0; i < 200; i++) expect((await call(generateKey().key)).kind).toBe('invalid');
    repo.down = true;
    clock.advance(5_000);
    for (const k of keys) expect((await call(k.key)).kind).toBe('ok');
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

describe('ApiKeyAuthenticator: lookups under load', () => {
  it('a flood of made-up ids is read in few batched SELECTs, known keys first', async () => {
    const { clock, repo, add, call, settle } = setup({
      maxInFlight: 2,
      batchSize: 50,
      maxWait: 60_000,
      cacheTtl: 1_000,
    });
    const known = await add();
    expect((await call(known.key)).kind).toBe('ok');
    clock.advance(1_000); // its record must be read again
    const fresh = await add();
    repo.hold();
    const flood = Array.from({ length: 500 }, () => call(generateKey().key));
    const legit = [call(fresh.key), call(known.key)];
    await settle();
    expect(repo.waiting).toBe(2); // two reads at once; everything else waits
    repo.release();
    for (const r of await Promise.all(flood)) expect(r.kind).toBe('invalid');
    for (const r of await Promise.all(legit)) expect(r.kind).toBe('ok');
    // the first read, 2 single reads, then the 500 waiting ids in batches of 50
    expect(repo.reads).toHaveLength(1 + 2 + 10);
    expect(repo.reads[3]?.[0]).toBe(known.id); // the known key goes first, ahead of the flood
  });

  it('overload answers unavailable without starting the fail-fast window', async () => {
    const { clock, repo, add, call, settle } = setup({ maxInFlight: 1, maxQueued: 2, maxWait: 1_000 });
    const k = await add();
    repo.hold();
    const first = call(generateKey().key);
    const queued = [call(generateKey().key), call(generateKey().key)];
    expect((await call(generateKey().key)).kind).toBe('unavailable'); // queue full
    await settle();
    clock.advance(1_001);
    repo.release();
    expect((await first).kind).toBe('invalid');
    for (const r of await Promise.all(queued)) expect(r.kind).toBe('unavailable'); // waited too long
    // no fail-fast: the very next lookup goes to the store
    expect((await call(k.key)).kind).toBe('ok');
  });

  it('a hung store: after the first failure, one probe per fail-fast window; the rest fail at once', async () => {
    const { clock, repo, add, call, settle } = setup({ retryAfter: 1_000 });
    const keys = await Promise.all(Array.from({ length: 30 }, () => add()));
    repo.down = true;
    expect((await call(keys[0]!.key)).kind).toBe('unavailable'); // the failure that opens the window
    repo.hold(); // now hung: reads never answer until released
    const reads = repo.reads.length;
    for (let i = 1; i < 10; i++) expect((await call(keys[i]!.key)).kind).toBe('unavailable');
    expect(repo.reads).toHaveLength(reads); // within the window: no read at all
    clock.advance(1_000);
    const probe = call(keys[10]!.key);
    await settle();
    const others = await Promise.all(keys.slice(11, 20).map((k) => call(k.key)));
    for (const r of others) expect(r.kind).toBe('unavailable'); // answered at once
    expect(repo.reads).toHaveLength(reads + 1); // only the probe reached the store
    repo.down = false;
    repo.release();
    expect((await probe).kind).toBe('ok');
    expect((await call(keys[20]!.key)).kind).toBe('ok'); // recovered
  });
});

describe('ApiKeyAuthenticator: clocks', () => {
  it('durations are monotonic: wall-clock steps change neither the TTL nor the fail-fast window', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const { clock, repo, add, call } = setup({ cacheTtl: 30_000, retryAfter: 1_000 });
    const k = await add();
    const other = await add();
    expect((await call(k.key)).kind).toBe('ok');
    repo.down = true;
    expect((await call(other.key)).kind).toBe('unavailable'); // the window opens
    vi.setSystemTime(Date.now() - 10 * 60_000); // the wall clock steps back 10 minutes
    repo.down = false;
    clock.advance(1_000);
    expect((await call(other.key)).kind).toBe('ok'); // the window closed 1 s later, monotonically
    const reads = repo.reads.length;
    vi.setSystemTime(Date.now() + 60 * 60_000); // and forward an hour
    expect((await call(k.key)).kind).toBe('ok');
    expect(repo.reads).toHaveLength(reads); // still cached: the TTL did not jump
  });

  it("expiry and grace are compared with the database's clock, whatever the instance's", async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(DB_EPOCH - 30_000 + 1_000); // this instance is 30 s behind the database
    const { clock, repo, add, call } = setup({ cacheTtl: 60_000 });
    const expiring = await add({ expiresAt: new Date(clock.db + 2_000) });
    const grace = await add({ revokedAt: new Date(clock.db + 2_000) });
    const revoked = await add();
    expect((await call(expiring.key)).kind).toBe('ok');
    expect((await call(grace.key)).kind).toBe('ok');
    await repo.revoke(revoked.id); // revoked at the database's now
    expect((await call(revoked.key)).kind).toBe('invalid');
    clock.advance(2_000);
    expect((await call(expiring.key)).kind).toBe('invalid'); // cached record, database time
    expect((await call(grace.key)).kind).toBe('invalid');
    vi.setSystemTime(DB_EPOCH + 120_000); // a clock far ahead changes nothing either
    const later = await add({ expiresAt: new Date(clock.db + 2_000) });
    expect((await call(later.key)).kind).toBe('ok');
  });
});

describe('ApiKeyAuthenticator: the revocation listener', () => {
  it('records last cacheTtl while heartbeats confirm the listener, unconfirmedTtl otherwise', async () => {
    const { clock, repo, add, call } = setup({ cacheTtl: 30_000, unconfirmedTtl: 3_000 }, BroadcastRepo);
    await new Promise((r) => setImmediate(r)); // the repository is opened
    const watcher = repo.watcher!;
    const k = await add();
    // before the LISTEN is confirmed: 3 s
    expect((await call(k.key)).kind).toBe('ok');
    clock.advance(2_900);
    await call(k.key);
    expect(repo.reads).toHaveLength(1);
    clock.advance(100);
    await call(k.key);
    expect(repo.reads).toHaveLength(2);
    // heartbeats every second: the record lasts the whole cacheTtl
    for (let t = 0; t < 29; t++) {
      clock.advance(1_000);
      watcher.alive(5);
      expect((await call(k.key)).kind).toBe('ok');
    }
    expect(repo.reads).toHaveLength(2);
    clock.advance(1_000);
    watcher.alive(5);
    await call(k.key);
    expect(repo.reads).toHaveLength(3); // cacheTtl reached
    // the listener goes silent (a frozen backend): 3 s after the last confirmation, re-read
    await repo.revoke(k.id); // its notice never arrives
    clock.advance(2_000);
    expect((await call(k.key)).kind).toBe('ok');
    clock.advance(1_000);
    expect((await call(k.key)).kind).toBe('invalid');
  });

  it('a reset (listener replaced) makes every record re-read, and drops lookups in flight', async () => {
    const { repo, add, call, settle } = setup({}, BroadcastRepo);
    await settle();
    const watcher = repo.watcher!;
    watcher.alive(0);
    const cached = await add();
    const uncached = await add();
    expect((await call(cached.key)).kind).toBe('ok');
    repo.hold();
    const early = call(uncached.key); // its read starts before the connection is lost
    await settle();
    await repo.revoke(cached.id); // their notices are lost with the connection
    await repo.revoke(uncached.id);
    watcher.reset();
    watcher.lost('heartbeat unanswered');
    const late = [call(cached.key), call(uncached.key)];
    await settle();
    expect(repo.waiting).toBe(3); // the early read, and one new read per key
    repo.release();
    expect((await early).kind).toBe('ok');
    for (const r of await Promise.all(late)) expect(r.kind).toBe('invalid');
  });
});
