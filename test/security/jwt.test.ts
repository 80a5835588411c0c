/**
 * Hostile JWTs: every one is refused with a 401-kind result, no URL from a
 * token is ever fetched, a flood of unknown kids costs a bounded number of JWKS fetches, and no
 * token reaches the logs.
 */
import { createHmac } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { CompactSign } from 'jose';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createJwtAuthenticator } from '../../src/auth/jwt/authenticator.js';
import type { AuthAttempt } from '../../src/auth/types.js';
import type { GatewayConfig, JwtConfig } from '../../src/config/schema.js';
import {
  AUDIENCE,
  b64url,
  claims,
  ISSUER,
  JwksServer,
  makeKey,
  rawToken,
  sign,
  signRaw,
  type TestKey,
} from '../helpers/jwks.js';

/** JwtConfig['algorithms'] is typed never[] by the schema's mapped literals */
const algs = (...a: string[]) => a as unknown as JwtConfig['algorithms'];

let good: TestKey;
let attacker: TestKey;
let jwks: JwksServer;
/** serves the attacker's keys: must never be asked anything */
let evil: JwksServer;
let auth: ReturnType<typeof createJwtAuthenticator>;
const logLines: string[] = [];

const jwtConfig = (extra: Partial<JwtConfig> = {}): JwtConfig => ({
  algorithms: algs('RS256'),
  issuer: ISSUER,
  audience: AUDIENCE,
  jwksUrl: jwks.url,
  clockTolerance: 60_000,
  rolesClaim: 'roles',
  tierClaim: 'tier',
  requireExp: true,
  ...extra,
});
const logger = () => pino({ level: 'debug' }, { write: (line: string) => void logLines.push(line) });

const check = (token: string, a = auth): Promise<AuthAttempt> =>
  Promise.resolve(
    a.authenticate({ headers: { authorization: `Bearer ${token}` }, url: '/' } as IncomingMessage),
  );

async function expectInvalid(token: string, reason?: string | RegExp): Promise<void> {
  const result = await check(token);
  expect(result.kind).toBe('invalid');
  if (reason !== undefined && result.kind === 'invalid') expect(result.reason).toMatch(reason);
}

beforeAll(async () => {
  [good, attacker] = await Promise.all([makeKey('good'), makeKey('good')]); // same kid on purpose
  jwks = await JwksServer.start([good]);
  evil = await JwksServer.start([attacker]);
  auth = createJwtAuthenticator(jwtConfig(), {} as GatewayConfig, logger());
  await auth.ready?.();
});
afterAll(async () => {
  await auth.close();
  await Promise.all([jwks.close(), evil.close()]);
});

describe('algorithm confusion', () => {
  it('refuses alg none in any casing, with or without a signature', async () => {
    for (const alg of ['none', 'None', 'NONE', 'nOnE', 'none ', '']) {
      await expectInvalid(rawToken({ alg, typ: 'JWT' }, claims()));
      await expectInvalid(rawToken({ alg, typ: 'JWT' }, claims(), 'c2ln'), /alg_not_allowed|malformed/);
    }
    await expectInvalid(rawToken({ typ: 'JWT' }, claims(), 'c2ln'), 'alg_not_allowed');
  });

  it('refuses HS256 signed with the RSA public key as the HMAC secret', async () => {
    for (const secret of [good.publicPem, JSON.stringify(good.publicJwk), String(good.publicJwk.n)]) {
      for (const alg of ['HS256', 'HS384', 'HS512']) {
        const input = `${b64url(JSON.stringify({ alg, kid: good.kid, typ: 'JWT' }))}.${b64url(JSON.stringify(claims()))}`;
        const mac = createHmac(`sha${alg.slice(2)}`, secret)
          .update(input)
          .digest('base64url');
        await expectInvalid(`${input}.${mac}`, 'alg_not_allowed');
      }
    }
  });

  it('refuses a token whose alg is allowed but whose key is of another type (ES256 header, RSA kid)', async () => {
    const es = await makeKey('good', 'ES256');
    await expectInvalid(await sign(es, {}, { alg: 'ES256' }), 'alg_not_allowed');
  });
});

describe('keys named by the token are never trusted or fetched', () => {
  it('ignores embedded jwk, jku, x5u and x5c (the attacker URL gets no request)', async () => {
    const before = jwks.requests;
    const headers: Array<Record<string, unknown>> = [
      { jwk: attacker.publicJwk },
      { jwk: attacker.publicJwk, kid: undefined },
      { jku: evil.url },
      { jku: evil.url, kid: 'evil-only' },
      { x5u: evil.url },
      { x5u: evil.url, kid: 'evil-only' },
      { x5c: [b64url('not a certificate')] },
      { jwk: attacker.publicJwk, jku: evil.url, x5u: evil.url, x5c: ['MIIB'] },
    ];
    for (const h of headers) {
      const { kid, ...rest } = h;
      const header = 'kid' in h ? (kid === undefined ? { kid: undefined } : { kid }) : {};
      const token = await sign(attacker, {}, { ...rest, ...header });
      await expectInvalid(token, /bad_signature|unknown_key/);
    }
    await new Promise((r) => setTimeout(r, 50));
    expect(evil.requests).toBe(0);
    // at most the one unknown-kid refetch (cooldown), never more
    expect(jwks.requests - before).toBeLessThanOrEqual(1);
  });

  it('refuses crit headers it does not understand', async () => {
    await expectInvalid(
      signRaw(good, { alg: 'RS256', kid: 'good', crit: ['x-evil'], 'x-evil': 1 }, claims()),
      /crit/,
    );
    // the hand signer itself is sound
    expect((await check(signRaw(good, { alg: 'RS256', kid: 'good' }, claims()))).kind).toBe('ok');
  });

  it('treats kid injection as an unknown key', async () => {
    const kids = [
      '../../etc/passwd',
      '/dev/null',
      "' OR '1'='1",
      'good"; DROP TABLE keys; --',
      'good\u0000',
      '${jndi:ldap://127.0.0.1/x}',
      'x'.repeat(5000),
    ];
    for (const kid of kids) await expectInvalid(await sign(attacker, {}, { kid }), /unknown_key|bad_kid/);
    await expectInvalid(await sign(good, {}, { kid: 42 }), 'bad_kid');
  });
});

describe('claims', () => {
  const now = () => Math.floor(Date.now() / 1000);
  it('refuses expired tokens beyond the clock tolerance, accepts within it', async () => {
    await expectInvalid(await sign(good, { exp: now() - 120 }), 'expired');
    expect((await check(await sign(good, { exp: now() - 30 }))).kind).toBe('ok');
  });
  it('refuses not-yet-valid tokens beyond the clock tolerance, accepts within it', async () => {
    await expectInvalid(await sign(good, { nbf: now() + 120 }), 'bad_nbf');
    expect((await check(await sign(good, { nbf: now() + 30 }))).kind).toBe('ok');
  });
  it('refuses an iat in the future beyond the clock tolerance, accepts it within', async () => {
    for (const iat of [now() + 3600, now() + 120, 1e12, 1e300])
      await expectInvalid(await sign(good, { iat, exp: now() + 300 }), 'bad_iat');
    await expectInvalid(await sign(good, { iat: 'now' }));
    expect((await check(await sign(good, { iat: now() + 30 }))).kind).toBe('ok');
    expect((await check(await sign(good, { iat: undefined }))).kind).toBe('ok'); // optional by default
  });
  it('maxTokenAge: refuses a token issued too long ago, or without iat', async () => {
    const young = createJwtAuthenticator(jwtConfig({ maxTokenAge: 3600_000 }), {} as GatewayConfig, logger());
    await young.ready?.();
    const result = (token: string) => check(token, young);
    expect(await result(await sign(good, { iat: now() - 7200, exp: now() + 300 }))).toMatchObject({
      kind: 'invalid',
      reason: 'too_old',
    });
    // 1 h plus the 60 s tolerance
    expect(await result(await sign(good, { iat: now() - 3600 - 120 }))).toMatchObject({ reason: 'too_old' });
    expect(await result(await sign(good, { iat: undefined }))).toMatchObject({ reason: 'bad_iat' });
    expect(await result(await sign(good, { iat: now() + 3600 }))).toMatchObject({ reason: 'bad_iat' });
    expect((await result(await sign(good, { iat: now() - 3600 + 30 }))).kind).toBe('ok');
    expect((await result(await sign(good, { iat: now() - 3600 - 30 }))).kind).toBe('ok'); // tolerance
    await young.close();
  });
  it('types: only the listed typ values, case-insensitive, application/ optional; typ then required', async () => {
    const typed = createJwtAuthenticator(
      jwtConfig({ types: ['at+jwt', 'application/custom'] }),
      {} as GatewayConfig,
      logger(),
    );
    await typed.ready?.();
    const result = (typ: string | undefined) => sign(good, {}, { typ }).then((t) => check(t, typed));
    for (const typ of ['at+jwt', 'AT+JWT', 'application/at+jwt', 'Application/AT+JWT', 'custom'])
      expect((await result(typ)).kind, typ).toBe('ok');
    for (const typ of ['JWT', 'jwt', 'at+jwt ', 'application/jwt', 'id+jwt', '', undefined])
      expect(await result(typ), String(typ)).toMatchObject({ kind: 'invalid', reason: 'bad_typ' });
    expect(
      await check(rawToken({ alg: 'RS256', kid: 'good', typ: ['at+jwt'] }, claims(), 'c2ln'), typed),
    ).toMatchObject({ reason: 'bad_typ' });
    // not configured: any typ, or none, as before
    expect((await check(await sign(good, {}, { typ: 'whatever' }))).kind).toBe('ok');
    expect((await check(await sign(good, {}, { typ: undefined }))).kind).toBe('ok');
    await typed.close();
  });
  it('refuses a wrong or missing iss or aud', async () => {
    await expectInvalid(await sign(good, { iss: 'https://evil.example/' }), 'bad_iss');
    await expectInvalid(await sign(good, { iss: undefined }), 'bad_iss');
    await expectInvalid(await sign(good, { aud: 'other-api' }), 'bad_aud');
    await expectInvalid(await sign(good, { aud: undefined }), 'bad_aud');
    expect((await check(await sign(good, { aud: ['other-api', AUDIENCE] }))).kind).toBe('ok');
  });
  it('refuses a missing exp when requireExp, accepts it otherwise', async () => {
    await expectInvalid(await sign(good, { exp: undefined }), 'bad_exp');
    const lax = createJwtAuthenticator(jwtConfig({ requireExp: false }), {} as GatewayConfig, logger());
    await lax.ready?.();
    expect((await check(await sign(good, { exp: undefined }), lax)).kind).toBe('ok');
    await lax.close();
  });
  it('refuses a missing, empty or non-string sub, and non-numeric exp', async () => {
    await expectInvalid(await sign(good, { sub: undefined }), 'bad_sub');
    await expectInvalid(await sign(good, { sub: '' }), 'bad_sub');
    await expectInvalid(await sign(good, { sub: 12 }));
    await expectInvalid(await sign(good, { exp: 'tomorrow' }));
  });
  it('refuses a tampered payload', async () => {
    const [h, , s] = (await sign(good, { sub: 'alice' })).split('.');
    await expectInvalid(
      `${h}.${b64url(JSON.stringify(claims({ sub: 'admin', roles: ['admin'] })))}.${s}`,
      'bad_signature',
    );
  });
});

describe('malformed tokens', () => {
  it('refuses wrong segment counts, bad base64, non-JSON, and oversized tokens', async () => {
    const valid = await sign(good);
    const [h, p, s] = valid.split('.') as [string, string, string];
    const bad = [
      '',
      'abc',
      `${h}.${p}`,
      `${h}.${p}.`,
      `${h}.${p}.${s}.extra`,
      `${h}..${s}`,
      `${h}.${p}.${s}.x.y`, // JWE-shaped
      `${h}!.${p}.${s}`,
      `${h}.${p}.${s}==`,
      `${b64url('{not json')}.${p}.${s}`,
      `${b64url('[1,2]')}.${p}.${s}`,
      `${b64url('"RS256"')}.${p}.${s}`,
      `${h}.${b64url('not json')}.${s}`,
      ` ${valid}x`,
    ];
    for (const t of bad) await expectInvalid(t);
    // signed, but the payload is not a JSON object
    for (const payload of ['not json', '[1]', 'null']) {
      const t = await new CompactSign(new TextEncoder().encode(payload))
        .setProtectedHeader({ alg: 'RS256', kid: good.kid })
        .sign(good.privateKey);
      await expectInvalid(t);
    }
    // a properly signed token over 8 KB
    await expectInvalid(await sign(good, { pad: 'x'.repeat(9000) }), 'token_too_large');
    expect((await check(await sign(good, { pad: 'x'.repeat(4000) }))).kind).toBe('ok');
  });

  it('ignores a token in the query string', async () => {
    const token = await sign(good);
    const r = await auth.authenticate({ headers: {}, url: `/?access_token=${token}` } as IncomingMessage);
    expect(r.kind).toBe('absent');
  });
});

describe('denial of service', () => {
  it('a flood of unknown kids causes a bounded number of JWKS fetches', async () => {
    const before = jwks.requests;
    const tokens = await Promise.all(
      Array.from({ length: 500 }, (_, i) => sign(attacker, {}, { kid: `flood-${i}` })),
    );
    const results = await Promise.all(tokens.map((t) => check(t)));
    expect(results.every((r) => r.kind === 'invalid')).toBe(true);
    for (const t of tokens.slice(0, 100)) await check(t);
    expect(jwks.requests - before).toBeLessThanOrEqual(1);
  });
});

describe('secrecy', () => {
  it('never writes a token (or a signature) to the logs, even at debug level', async () => {
    const token = await sign(attacker, { sub: 'secret-subject' });
    await check(token);
    await check(`${token}tampered`);
    const text = logLines.join('');
    expect(logLines.length).toBeGreaterThan(0);
    for (const part of token.split('.')) expect(text).not.toContain(part);
    expect(text).not.toContain('secret-subject');
  });
});
