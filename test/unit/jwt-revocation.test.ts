/**
 * The JWT denylist in memory (what the hot path reads) and where the verifier consults it: after
 * the signature check, and after a verified-token cache hit (a token cached before its
 * revocation is refused from the next request on). The Redis side is tested through real
 * gateways (test/integration/token-revocation.test.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJwtAuthenticator } from '../../src/auth/jwt/authenticator.js';
import {
  Denylist,
  PASS,
  REVOKED,
  TOKEN_REVOKED,
  UNKNOWN,
  type RevocationCheck,
  type Verdict,
} from '../../src/auth/jwt/revocation.js';
import { DEFAULT_VERIFIER_TUNING, JwtVerifier } from '../../src/auth/jwt/verifier.js';
import { systemClock } from '../../src/clock.js';
import { loadConfigText } from '../../src/config/load.js';
import { formatProblem } from '../../src/config/problems.js';
import type { GatewayConfig, JwtConfig } from '../../src/config/schema.js';
import { silentLogger } from '../../src/observability/logger.js';
import { AUDIENCE, ISSUER, JwksServer, makeKey, sign, type TestKey } from '../helpers/jwks.js';

describe('denylist', () => {
  it('revokes a jti, whatever the subject and the iat', () => {
    const d = new Denylist();
    d.addJti('j1', 5_000);
    expect(d.revoked('anyone', 'j1', 1)).toBe(true);
    expect(d.revoked('anyone', 'j2', 1)).toBe(false);
    expect(d.revoked('anyone', null, 1)).toBe(false);
  });

  it("revokes a subject's tokens issued up to the second of the revocation, not after", () => {
    const d = new Denylist();
    d.addSubject('alice', 1_000_500); // revoked at 1000.5 s
    expect(d.revoked('alice', null, 999)).toBe(true);
    // issued in the same second: maybe before the revocation (iat has one-second precision)
    expect(d.revoked('alice', 'x', 1000)).toBe(true);
    expect(d.revoked('alice', 'x', 1001)).toBe(false); // issued after it
    expect(d.revoked('bob', 'x', 999)).toBe(false);
    // a token without iat cannot be dated: revoked while its subject is
    expect(d.revoked('alice', null, null)).toBe(true);
  });

  it('keeps the latest instant of a subject and the longest life of a jti, in any order', () => {
    const d = new Denylist();
    d.addSubject('alice', 2_000_000);
    d.addSubject('alice', 1_000_000); // an older message arriving late changes nothing
    expect(d.revoked('alice', null, 1500)).toBe(true);
    d.addJti('j', 9_000);
    d.addJti('j', 1_000);
    d.prune(5_000, 10_000);
    expect(d.jtis.get('j')).toBe(9_000);
  });

  it('prunes what outlived every token it concerns', () => {
    const d = new Denylist();
    d.addJti('old', 1_000);
    d.addJti('new', 3_000);
    d.addSubject('gone', 1_000);
    d.addSubject('kept', 2_500);
    d.prune(2_000, 1_000); // subjects kept 1 s after their revocation
    expect([...d.jtis.keys()]).toEqual(['new']);
    expect([...d.subjects.keys()]).toEqual(['kept']);
  });
});

const algs = (...a: string[]) => a as unknown as JwtConfig['algorithms'];
const jwtConfig = (jwksUrl: string): JwtConfig => ({
  algorithms: algs('RS256'),
  issuer: ISSUER,
  audience: AUDIENCE,
  jwksUrl,
  clockTolerance: 60_000,
  rolesClaim: 'roles',
  tierClaim: 'tier',
  requireExp: true,
});

/** a denylist of the verifier's: a Denylist with a settable "never loaded" state */
class FakeCheck implements RevocationCheck {
  readonly list = new Denylist();
  loaded = true;
  calls = 0;
  check(sub: string, jti: string | null, iat: number | null): Verdict {
    this.calls++;
    if (!this.loaded) return UNKNOWN;
    return this.list.revoked(sub, jti, iat) ? REVOKED : PASS;
  }
}

describe('verifier with a denylist', () => {
  let key: TestKey;
  let jwks: JwksServer;
  beforeAll(async () => {
    key = await makeKey('rev-1');
    jwks = await JwksServer.start([key]);
  });
  afterAll(() => jwks.close());

  const verifierWith = async (check: FakeCheck) => {
    const jwt = jwtConfig(jwks.url);
    const auth = createJwtAuthenticator(jwt, {} as GatewayConfig, silentLogger());
    await auth.ready?.();
    return {
      verifier: new JwtVerifier(jwt, auth.keys, DEFAULT_VERIFIER_TUNING, systemClock, check),
      close: () => auth.close(),
    };
  };

  it('refuses a revoked jti at the signature check and on every cache hit after', async () => {
    const check = new FakeCheck();
    const { verifier, close } = await verifierWith(check);
    const token = await sign(key, { sub: 'alice', jti: 'j-1' });
    const first = await verifier.verify(token);
    expect(first.kind).toBe('ok');
    // a cache hit answers with the same object: nothing is allocated per request
    const hit = verifier.quick(token);
    expect(hit?.kind).toBe('ok');
    expect(verifier.quick(token)).toBe(hit);

    check.list.addJti('j-1', Date.now() + 60_000); // revoked while cached
    expect(verifier.quick(token)).toEqual({ kind: 'invalid', reason: TOKEN_REVOKED });
    // a token with the same subject and another jti still passes
    const other = await sign(key, { sub: 'alice', jti: 'j-2' });
    expect((await verifier.verify(other)).kind).toBe('ok');
    // a revoked token not yet cached is refused after its signature check, then from the cache
    const fresh = await sign(key, { sub: 'bob', jti: 'j-1', iat: Math.floor(Date.now() / 1000) - 5 });
    expect(await verifier.verify(fresh)).toEqual({ kind: 'invalid', reason: TOKEN_REVOKED });
    const calls = check.calls;
    expect(verifier.quick(fresh)).toEqual({ kind: 'invalid', reason: TOKEN_REVOKED });
    expect(check.calls).toBe(calls + 1);
    await close();
  });

  it('refuses the tokens of a revoked subject, those without jti included, and accepts a newer one', async () => {
    const check = new FakeCheck();
    const { verifier, close } = await verifierWith(check);
    const now = Math.floor(Date.now() / 1000);
    const noJti = await sign(key, { sub: 'carol', iat: now - 30 });
    expect((await verifier.verify(noJti)).kind).toBe('ok');
    check.list.addSubject('carol', (now - 10) * 1000 + 400);
    expect(verifier.quick(noJti)).toEqual({ kind: 'invalid', reason: TOKEN_REVOKED });
    const newer = await sign(key, { sub: 'carol', iat: now - 9 });
    expect((await verifier.verify(newer)).kind).toBe('ok');
    await close();
  });

  it('says unavailable (503) while the denylist was never read and the policy is closed', async () => {
    const check = new FakeCheck();
    check.loaded = false;
    const { verifier, close } = await verifierWith(check);
    const token = await sign(key, { sub: 'dave', jti: 'j-9' });
    expect((await verifier.verify(token)).kind).toBe('unavailable');
    expect(verifier.quick(token)?.kind).toBe('unavailable');
    check.loaded = true;
    expect(verifier.quick(token)?.kind).toBe('ok');
    await close();
  });
});

describe('auth.jwt.revocation config', () => {
  const file = (redis: string, revocation: string) => `
${redis}
auth:
  jwt:
    jwksUrl: https://idp.example.test/jwks
    revocation: ${revocation}
`;
  const problems = (text: string) => {
    const result = loadConfigText(text, 'gw.yaml');
    return result.ok ? [] : result.problems.map(formatProblem);
  };

  it('needs redis, names the field, and applies the defaults', () => {
    expect(problems(file('', '{}'))).toEqual([
      expect.stringMatching(/^gw\.yaml:\d+:\d+: auth\.jwt\.revocation: needs `redis`/),
    ]);
    expect(problems(file('', '{ enabled: false }'))).toEqual([]);
    const result = loadConfigText(file('redis: { url: "redis://127.0.0.1:6379" }', '{}'), 'gw.yaml');
    expect(result.ok && result.config.auth?.jwt?.revocation).toEqual({
      enabled: true,
      maxTokenLifetime: 86_400_000,
      resyncInterval: 30_000,
      onUnavailable: 'closed',
      keyPrefix: 'gh:',
    });
  });

  it('refuses a prefix that would break the hash tag, short intervals and unknown keys', () => {
    const redis = 'redis: { url: "redis://127.0.0.1:6379" }';
    expect(problems(file(redis, '{ keyPrefix: "a{b}" }'))).toEqual([
      expect.stringContaining('auth.jwt.revocation.keyPrefix: must be at most 64 characters, without braces'),
    ]);
    expect(problems(file(redis, '{ resyncInterval: 10ms }'))).toEqual([
      expect.stringContaining('auth.jwt.revocation.resyncInterval: must be at least 1s'),
    ]);
    expect(problems(file(redis, '{ onUnavailable: maybe }'))).toHaveLength(1);
    expect(problems(file(redis, '{ ttl: 1d }'))).toEqual([expect.stringContaining('auth.jwt.revocation')]);
  });
});
