import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { JWSHeaderParameters } from 'jose';
import type { Clock } from '../../src/clock.js';
import { DEFAULT_JWKS_TUNING, JwksKeySource, type JwksTuning } from '../../src/auth/jwt/jwks.js';
import type { KeyLookup } from '../../src/auth/jwt/keys.js';
import { JwtVerifier } from '../../src/auth/jwt/verifier.js';
import type { JwtConfig } from '../../src/config/schema.js';
import { silentLogger } from '../../src/observability/logger.js';
import { closedPort } from '../helpers/upstream.js';
import { AUDIENCE, ISSUER, JwksServer, makeKey, sign, type TestKey } from '../helpers/jwks.js';

/** JwtConfig['algorithms'] is typed never[] by the schema's mapped literals */
const algs = (...a: string[]) => a as unknown as JwtConfig['algorithms'];

const tuning = (extra: Partial<JwksTuning> = {}): JwksTuning => ({
  ...DEFAULT_JWKS_TUNING,
  timeoutMs: 1000,
  readyTimeoutMs: 1000,
  ...extra,
});
const jwtConfig = (url: string): JwtConfig => ({
  algorithms: algs('RS256'),
  issuer: ISSUER,
  audience: AUDIENCE,
  jwksUrl: url,
  clockTolerance: 0,
  rolesClaim: 'roles',
  tierClaim: 'tier',
  requireExp: true,
});

let k1: TestKey;
let k2: TestKey;
const cleanup: Array<() => unknown> = [];
beforeAll(async () => {
  [k1, k2] = await Promise.all([makeKey('k1'), makeKey('k2')]);
});
afterEach(async () => {
  for (const c of cleanup.splice(0)) await c();
});

async function setup(keys: TestKey[], t: Partial<JwksTuning> = {}, clock?: Clock) {
  const server = await JwksServer.start(keys);
  const source = new JwksKeySource(server.url, silentLogger(), tuning(t), clock);
  const verifier = new JwtVerifier(jwtConfig(server.url), source);
  cleanup.push(
    () => source.close(),
    () => server.close(),
  );
  return { server, source, verifier };
}

describe('JWKS key source', () => {
  it('loads once at ready() and verifies without further fetches', async () => {
    const { server, source, verifier } = await setup([k1]);
    await source.ready();
    for (let i = 0; i < 5; i++) expect((await verifier.verify(await sign(k1))).kind).toBe('ok');
    expect(server.requests).toBe(1);
  });

  it('picks up a rotation: an unknown kid triggers one refetch', async () => {
    const { server, source, verifier } = await setup([k1]);
    await source.ready();
    server.setKeys([k2]);
    expect((await verifier.verify(await sign(k2))).kind).toBe('ok');
    expect(server.requests).toBe(2);
  });

  it('bounds unknown-kid refetches to one per cooldown, concurrent ones sharing the fetch', async () => {
    const { server, source, verifier } = await setup([k1], { cooldownMs: 60_000 });
    await source.ready();
    const tokens = await Promise.all(
      Array.from({ length: 200 }, (_, i) => sign(k1, {}, { kid: `unknown-${i}` })),
    );
    const results = await Promise.all(tokens.map((t) => verifier.verify(t)));
    expect(results.every((r) => r.kind === 'invalid' && r.reason === 'unknown_key')).toBe(true);
    for (const t of tokens.slice(0, 50)) await verifier.verify(t);
    expect(server.requests).toBe(2); // startup + one refetch
  });

  it('allows another unknown-kid refetch once the cooldown is over (monotonic clock)', async () => {
    let mono = 1_000_000;
    const clock: Clock = { wall: () => Date.now(), now: () => mono };
    const { server, source, verifier } = await setup([k1], { cooldownMs: 30_000 }, clock);
    await source.ready();
    await verifier.verify(await sign(k2));
    mono += 29_999;
    await verifier.verify(await sign(k2));
    expect(server.requests).toBe(2);
    mono += 1;
    server.setKeys([k1, k2]);
    expect((await verifier.verify(await sign(k2))).kind).toBe('ok');
    expect(server.requests).toBe(3);
  });

  it('keeps the last good keys while the endpoint fails or is gone', async () => {
    const { server, source, verifier } = await setup([k1], { cooldownMs: 0 });
    await source.ready();
    server.mode = 'error';
    expect((await verifier.verify(await sign(k2))).kind).toBe('invalid'); // refetch fails
    expect((await verifier.verify(await sign(k1, { sub: 'x' }))).kind).toBe('ok');
    server.mode = 'reset';
    expect((await verifier.verify(await sign(k2))).kind).toBe('invalid');
    expect((await verifier.verify(await sign(k1, { sub: 'y' }))).kind).toBe('ok');
    await server.close();
    expect((await verifier.verify(await sign(k1, { sub: 'z' }))).kind).toBe('ok');
  });

  it('says unavailable (503) while no key set was ever loaded, then recovers in the background', async () => {
    const { server, source, verifier } = await setup([k1], {
      retryMs: 20,
      maxRetryMs: 20,
      cooldownMs: 60_000,
    });
    server.mode = 'error';
    await source.ready(); // does not throw: warns and keeps trying
    expect(source.loaded).toBe(false);
    expect(await verifier.verify(await sign(k1))).toEqual({
      kind: 'unavailable',
      reason: 'jwks_unavailable',
    });
    server.mode = 'up';
    await expect.poll(() => source.loaded, { timeout: 2000 }).toBe(true);
    expect((await verifier.verify(await sign(k1))).kind).toBe('ok');
  });

  it('ready() is bounded when the endpoint hangs or nothing listens', async () => {
    const port = await closedPort();
    const source = new JwksKeySource(
      `http://127.0.0.1:${port}/jwks`,
      silentLogger(),
      tuning({ readyTimeoutMs: 300 }),
    );
    cleanup.push(() => source.close());
    const t0 = performance.now();
    await source.ready();
    expect(performance.now() - t0).toBeLessThan(1500);
    expect(source.loaded).toBe(false);
  });

  it('refreshes in the background per Cache-Control max-age (clamped)', async () => {
    const { server, source } = await setup([k1], { minRefreshMs: 50 });
    server.cacheControl = 'public, max-age=0';
    await source.ready();
    await expect.poll(() => server.requests, { timeout: 2000 }).toBeGreaterThanOrEqual(3);
  });

  it('refuses a malformed key set and keeps the previous one', async () => {
    const { server, source, verifier } = await setup([k1], { cooldownMs: 0 });
    await source.ready();
    for (const body of [
      'not json',
      '{"keys": 5}',
      '{"keys": []}',
      '{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}',
      '{"keys": [{"kty": "nonsense"}]}',
    ]) {
      server.body = body;
      expect(await source.refresh()).toBe(false);
      expect((await verifier.verify(await sign(k1, { sub: body }))).kind).toBe('ok');
    }
  });

  it('drops cached verifications when a key disappears from the set', async () => {
    const { server, source, verifier } = await setup([k1, k2]);
    await source.ready();
    await verifier.verify(await sign(k1));
    expect(verifier.cache.size).toBe(1);
    server.setKeys([k2]);
    await source.refresh();
    expect(verifier.cache.size).toBe(0);
  });
});

/**
 * Holds the key source's lookups for tokens of `kid` after they returned (the key already taken
 * from the set in force), until `release()`: a verification caught between its key lookup and
 * the end of its signature check, the window a refresh can fall into.
 */
function holdLookups(source: JwksKeySource, kid: string) {
  const lookup = source.lookup.bind(source);
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const state = { held: 0, release, holding: true };
  source.lookup = async (header: JWSHeaderParameters): Promise<KeyLookup> => {
    const found = await lookup(header);
    if (header.kid === kid && state.holding) {
      state.held++;
      await gate;
    }
    return found;
  };
  return state;
}

describe('a key withdrawn while verifications are in flight (shared-state item 7)', () => {
  it('never caches, nor accepts, a verification that started under the older key set', async () => {
    const { server, source, verifier } = await setup([k1, k2], { cooldownMs: 60_000 });
    await source.ready();
    const hold = holdLookups(source, 'k1');
    // an attacker streaming fresh tokens signed by a compromised key
    const tokens = await Promise.all(Array.from({ length: 32 }, (_, i) => sign(k1, { sub: `s${i}` })));
    const pending = tokens.map((t) => verifier.verify(t));
    await expect.poll(() => hold.held).toBe(32); // each has k1 in hand

    server.setKeys([k2]); // the provider withdraws k1
    expect(await source.refresh()).toBe(true);
    hold.holding = false;
    hold.release();

    const results = await Promise.all(pending);
    expect(results.filter((r) => r.kind === 'ok')).toHaveLength(0);
    expect(verifier.cache.size).toBe(0);
    for (const t of tokens) expect(verifier.quick(t)).toBeNull();
    for (const t of tokens.slice(0, 4)) expect((await verifier.verify(t)).kind).toBe('invalid');
    // a key still in the set is unaffected, and cached again
    expect((await verifier.verify(await sign(k2))).kind).toBe('ok');
    expect(verifier.cache.size).toBe(1);
  });

  it('bumps the key generation only when a key goes away', async () => {
    const { server, source } = await setup([k1]);
    await source.ready();
    server.setKeys([k1, k2]);
    await source.refresh();
    expect(source.generation).toBe(0);
    server.setKeys([k2]);
    await source.refresh();
    expect(source.generation).toBe(1);
  });
});

describe('before any key set loaded (shared-state item 15)', () => {
  it('answers unavailable after the short wait while the first fetch is still pending', async () => {
    const { server, source, verifier } = await setup([k1], {
      timeoutMs: 60_000, // the held fetch would hang a minute before giving up
      firstLoadWaitMs: 50,
      cooldownMs: 60_000,
    });
    server.mode = 'hold';
    const token = await sign(k1);
    // the first request starts the fetch and waits the short wait, not the fetch's timeout
    expect(await verifier.verify(token)).toEqual({ kind: 'unavailable', reason: 'jwks_unavailable' });
    expect(server.held).toBe(1); // the fetch is still pending
    // later requests do not wait again, nor start another fetch
    expect(await verifier.verify(await sign(k1, { sub: 'b' }))).toMatchObject({ kind: 'unavailable' });
    expect(server.held).toBe(1);
    expect(server.requests).toBe(1);
    // once the endpoint answers, tokens verify
    server.release();
    await expect.poll(() => source.loaded).toBe(true);
    expect((await verifier.verify(token)).kind).toBe('ok');

    // a first fetch that answers within the short wait serves the request that started it
    const fast = await setup([k1], { firstLoadWaitMs: 10_000, cooldownMs: 60_000 });
    expect((await fast.verifier.verify(token)).kind).toBe('ok');
    expect(fast.server.requests).toBe(1);
  });
});
