import { silentLogger } from '../../src/observability/logger.js';
import type { JwtConfig } from '../../src/config/schema.js';
import { createJwtAuthenticator } from '../../src/auth/jwt/authenticator.js';
import { bearerToken } from '../../src/auth/jwt/bearer.js';
import { claim } from '../../src/auth/jwt/verifier.js';
import { TokenCache } from '../../src/auth/jwt/token-cache.js';
import type { GatewayConfig } from '../../src/config/schema.js';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configFrom } from '../helpers/gateway.js';
import { AUDIENCE, ISSUER, JwksServer, makeKey, sign, type TestKey } from '../helpers/jwks.js';

/** JwtConfig['algorithms'] is typed never[] by the schema's mapped literals */
const algs = (...a: string[]) => a as unknown as JwtConfig['algorithms'];

const base = (extra: Partial<JwtConfig> = {}): JwtConfig => ({
  algorithms: algs('RS256'),
  issuer: ISSUER,
  audience: AUDIENCE,
  clockTolerance: 60_000,
  rolesClaim: 'roles',
  tierClaim: 'tier',
  requireExp: true,
  ...extra,
});
const config = {} as GatewayConfig;
const req = (authorization?: string, url = '/'): IncomingMessage =>
  ({ headers: authorization === undefined ? {} : { authorization }, url }) as IncomingMessage;

let rsa: TestKey;
let ec: TestKey;
let other: TestKey;
let jwks: JwksServer;

beforeAll(async () => {
  [rsa, ec, other] = await Promise.all([makeKey('rsa-1'), makeKey('ec-1', 'ES256'), makeKey('other')]);
  jwks = await JwksServer.start([rsa, ec]);
});
afterAll(() => jwks.close());

describe('bearer header', () => {
  it('reads Authorization: Bearer only, scheme case-insensitive', () => {
    expect(bearerToken(req('Bearer abc'))).toBe('abc');
    expect(bearerToken(req('bearer abc'))).toBe('abc');
    expect(bearerToken(req('BEARER abc'))).toBe('abc');
    expect(bearerToken(req('BeArEr   abc'))).toBe('abc');
    expect(bearerToken(req('Bearerabc'))).toBeNull();
    expect(bearerToken(req('Basic dXNlcjpwYXNz'))).toBeNull();
    expect(bearerToken(req(undefined, '/?access_token=abc'))).toBeNull();
  });
});

describe('JWT verifier with a JWKS', () => {
  it('accepts a good token and maps sub, roles and tier', async () => {
    const auth = createJwtAuthenticator(base({ jwksUrl: jwks.url }), config, silentLogger());
    await auth.ready?.();
    const token = await sign(rsa, { sub: 'alice', roles: ['reader', 'writer'], tier: 'pro' });
    const attempt = await auth.authenticate(req(`Bearer ${token}`));
    expect(attempt).toMatchObject({
      kind: 'ok',
      consumer: { id: 'alice', roles: ['reader', 'writer'], tier: 'pro' },
    });
    // the verified claims are kept, for a transform's ${jwt.claim.NAME}
    expect(attempt.kind === 'ok' ? attempt.consumer.claims?.['tier'] : null).toBe('pro');
    await auth.close();
  });

  it('defaults roles to [] and tier to "" when the claims are missing or of the wrong type', async () => {
    const auth = createJwtAuthenticator(base({ jwksUrl: jwks.url }), config, silentLogger());
    await auth.ready?.();
    const token = await sign(rsa, { roles: 'admin', tier: 7 });
    expect(await auth.authenticate(req(`Bearer ${token}`))).toMatchObject({
      kind: 'ok',
      consumer: { id: 'user-1', roles: [], tier: '' },
    });
    await auth.close();
  });

  it('only accepts the configured algorithms (ES256 token, RS256 configured)', async () => {
    const auth = createJwtAuthenticator(base({ jwksUrl: jwks.url }), config, silentLogger());
    await auth.ready?.();
    const token = await sign(ec);
    expect(await auth.authenticate(req(`Bearer ${token}`))).toMatchObject({
      kind: 'invalid',
      reason: 'alg_not_allowed',
    });
    const both = createJwtAuthenticator(
      base({ jwksUrl: jwks.url, algorithms: algs('RS256', 'ES256') }),
      config,
      silentLogger(),
    );
    await both.ready?.();
    expect(await both.authenticate(req(`Bearer ${token}`))).toMatchObject({ kind: 'ok' });
    await Promise.all([auth.close(), both.close()]);
  });

  it('no Authorization header is absent, not invalid', async () => {
    const auth = createJwtAuthenticator(base({ jwksUrl: jwks.url }), config, silentLogger());
    expect(await auth.authenticate(req())).toEqual({ kind: 'absent' });
    await auth.close();
  });

  it('reads Keycloak-style nested claims and Auth0-style namespaced claims', () => {
    expect(claim({ realm_access: { roles: ['a'] } }, 'realm_access.roles')).toEqual(['a']);
    expect(claim({ 'https://example.com/roles': ['b'] }, 'https://example.com/roles')).toEqual(['b']);
    expect(claim({ a: 1 }, 'a.b')).toBeUndefined();
  });

  it('caches a verified token: the second verify skips the key lookup', async () => {
    const auth = createJwtAuthenticator(base({ jwksUrl: jwks.url }), config, silentLogger());
    await auth.ready?.();
    const token = await sign(rsa);
    let lookups = 0;
    const lookup = auth.keys.lookup.bind(auth.keys);
    auth.keys.lookup = (h) => {
      lookups++;
      return lookup(h);
    };
    await auth.authenticate(req(`Bearer ${token}`));
    await auth.authenticate(req(`Bearer ${token}`));
    expect(lookups).toBe(1);
    expect(auth.verifier.cache.size).toBe(1);
    await auth.close();
  });
});

describe('JWT verifier with PEM files', () => {
  it('verifies with the public keys read at startup, tries each fitting key', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gh-jwt-'));
    await writeFile(join(dir, 'a.pem'), other.publicPem);
    await writeFile(join(dir, 'b.pem'), rsa.publicPem);
    const auth = createJwtAuthenticator(
      base({ publicKeys: [join(dir, 'a.pem'), join(dir, 'b.pem')] }),
      config,
      silentLogger(),
    );
    await auth.ready?.();
    expect(await auth.authenticate(req(`Bearer ${await sign(rsa, { kid: undefined })}`))).toMatchObject({
      kind: 'ok',
    });
    const stranger = await makeKey('x');
    expect(await auth.authenticate(req(`Bearer ${await sign(stranger)}`))).toMatchObject({
      kind: 'invalid',
      reason: 'bad_signature',
    });
    await auth.close();
  });

  it('refuses a private key or a missing file at startup with a clear message', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gh-jwt-'));
    await writeFile(join(dir, 'priv.pem'), '-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----\n');
    const priv = createJwtAuthenticator(
      base({ publicKeys: [join(dir, 'priv.pem')] }),
      config,
      silentLogger(),
    );
    await expect(priv.ready?.()).rejects.toThrow(/private key/);
    const missing = createJwtAuthenticator(
      base({ publicKeys: [join(dir, 'nope.pem')] }),
      config,
      silentLogger(),
    );
    await expect(missing.ready?.()).rejects.toThrow(/cannot read .*nope\.pem: ENOENT/);
  });

  it('refuses a symmetric algorithm or both key sources at construction', () => {
    expect(() =>
      createJwtAuthenticator(base({ jwksUrl: jwks.url, algorithms: algs('HS256') }), config, silentLogger()),
    ).toThrow(/asymmetric/);
    expect(() =>
      createJwtAuthenticator(base({ jwksUrl: jwks.url, publicKeys: ['a.pem'] }), config, silentLogger()),
    ).toThrow(/exactly one/);
  });
});

describe('token cache', () => {
  it('is keyed by a hash, bounded (LRU), and never outlives exp or the max TTL', () => {
    const c = new TokenCache(2, 1000);
    const consumer = { id: 'a', tier: '', roles: [] };
    const k = TokenCache.key('header.payload.sig');
    expect(k).not.toContain('payload');
    // (key, consumer, notAfter wall ms, wall now, monotonic now)
    c.set(k, consumer, null, 0, 0);
    expect(c.get(k, 999, 999)).toBe(consumer);
    expect(c.get(k, 1000, 1000)).toBeNull(); // max TTL
    c.set('e', consumer, 500, 0, 0);
    expect(c.get('e', 500, 500)).toBeNull(); // exp
    c.set('x', consumer, null, 0, 0);
    c.set('y', consumer, null, 0, 0);
    c.get('x', 1, 1);
    c.set('z', consumer, null, 0, 0);
    expect(c.size).toBe(2);
    expect(c.get('y', 1, 1)).toBeNull(); // least recently used went first
    expect(c.get('x', 1, 1)).toBe(consumer);
    c.set('past', consumer, 10, 20, 20);
    expect(c.get('past', 20, 20)).toBeNull();
  });
});

describe('token cache clocks (shared-state item 10)', () => {
  /** a clock whose wall and monotonic readings the test moves apart */
  const testClock = () => {
    const c = { wall: Date.now(), mono: 5_000_000 };
    return { c, clock: { wall: () => c.wall, now: () => c.mono } };
  };
  const start = async (extra: Partial<JwtConfig>, clock: { wall(): number; now(): number }) => {
    const auth = createJwtAuthenticator(base({ jwksUrl: jwks.url, ...extra }), config, silentLogger(), {
      clock,
    });
    await auth.ready?.();
    return auth;
  };

  it('measures the 5-minute TTL on the monotonic clock: a wall-clock step back does not extend it', async () => {
    const { c, clock } = testClock();
    const auth = await start({}, clock);
    const token = await sign(rsa, { exp: Math.floor(c.wall / 1000) + 3600 });
    expect((await auth.verifier.verify(token)).kind).toBe('ok');
    expect(auth.verifier.quick(token)).toMatchObject({ kind: 'ok' }); // cached
    c.wall -= 3600_000; // NTP steps the wall clock back an hour
    c.mono += 5 * 60_000 - 1;
    expect(auth.verifier.quick(token)).toMatchObject({ kind: 'ok' });
    c.mono += 1; // five minutes have passed, whatever the wall clock says
    expect(auth.verifier.quick(token)).toBeNull();
    await auth.close();
  });

  it("a connection's remembered token: a forged token after a valid one on the same connection is checked in full, and the remembered one still expires", async () => {
    const { c, clock } = testClock();
    const auth = await start({ clockTolerance: 0 }, clock);
    const socket = {}; // stands for one keep-alive connection
    const token = await sign(rsa, { exp: Math.floor(c.wall / 1000) + 60 });
    expect((await auth.verifier.verify(token)).kind).toBe('ok');
    expect(auth.verifier.quick(token, socket)).toMatchObject({ kind: 'ok' }); // remembered now
    // the same payload with another signature: a different string, so no shortcut applies
    const [head, body] = token.split('.');
    const forged = `${head}.${body}.${'A'.repeat(342)}`;
    expect(auth.verifier.quick(forged, socket)).toBeNull(); // not cached: goes to a full check
    expect(await auth.verifier.verify(forged)).toMatchObject({ kind: 'invalid' });
    expect(auth.verifier.quick('not a token', socket)).toEqual({ kind: 'invalid', reason: 'malformed' });
    expect(auth.verifier.quick(token, socket)).toMatchObject({ kind: 'ok' });
    c.wall += 61_000; // the remembered key does not outlive the token's exp
    expect(auth.verifier.quick(token, socket)).toBeNull();
    await auth.close();
  });

  it('compares exp with the wall clock: a cached token ends at its exp', async () => {
    const { c, clock } = testClock();
    const auth = await start({ clockTolerance: 0 }, clock);
    const token = await sign(rsa, { exp: Math.floor(c.wall / 1000) + 60 });
    expect((await auth.verifier.verify(token)).kind).toBe('ok');
    c.wall += 61_000; // no monotonic time passes: only the wall clock says it expired
    expect(auth.verifier.quick(token)).toBeNull();
    expect(await auth.verifier.verify(token)).toMatchObject({ kind: 'invalid', reason: 'expired' });
    await auth.close();
  });

  it('a cached token ends at iat + maxTokenAge', async () => {
    const { c, clock } = testClock();
    const auth = await start({ clockTolerance: 0, maxTokenAge: 600_000 }, clock);
    const nowS = Math.floor(c.wall / 1000);
    const token = await sign(rsa, { iat: nowS - 540, exp: nowS + 3600 }); // 9 of its 10 minutes gone
    expect((await auth.verifier.verify(token)).kind).toBe('ok');
    c.wall += 59_000;
    expect(auth.verifier.quick(token)).toMatchObject({ kind: 'ok' });
    c.wall += 2_000;
    expect(auth.verifier.quick(token)).toBeNull();
    expect(await auth.verifier.verify(token)).toMatchObject({ kind: 'invalid', reason: 'too_old' });
    await auth.close();
  });
});

describe('auth.jwt config: maxTokenAge and types', () => {
  const yaml = (extra: string) => `
auth:
  jwt:
    jwksUrl: http://127.0.0.1:9/jwks.json
${extra}`;

  it('loads them (a duration, a list of media types); absent means no limit and any typ', () => {
    const jwt = configFrom(yaml('    maxTokenAge: 15m\n    types: [JWT, application/at+jwt]\n')).auth?.jwt;
    expect(jwt).toMatchObject({ maxTokenAge: 900_000, types: ['JWT', 'application/at+jwt'] });
    const plain = configFrom(yaml('')).auth?.jwt;
    expect(plain?.maxTokenAge).toBeUndefined();
    expect(plain?.types).toBeUndefined();
  });

  it('refuses bad values with a message naming the field', () => {
    expect(() => configFrom(yaml('    maxTokenAge: soon\n'))).toThrow(
      /test\.yaml:5:5: auth\.jwt\.maxTokenAge: must be a duration/,
    );
    expect(() => configFrom(yaml('    types: ["at jwt"]\n'))).toThrow(
      /auth\.jwt\.types\[0\]: must be a media type/,
    );
    expect(() => configFrom(yaml('    types: []\n'))).toThrow(/auth\.jwt\.types: must list at least one/);
  });
});
