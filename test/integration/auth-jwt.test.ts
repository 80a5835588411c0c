/**
 * JWT and RBAC through the real gateway: 401 / 403 / 200, consumer headers upstream, key
 * rotation, a JWKS endpoint going down, 503 before any key set (at once, and in readiness), a
 * key withdrawn while tokens signed by it are being verified, and the tier feeding rate limits.
 */
import type { JWSHeaderParameters } from 'jose';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { createJwtAuthenticator } from '../../src/auth/jwt/authenticator.js';
import type { KeyLookup } from '../../src/auth/jwt/keys.js';
import type { Runtime } from '../../src/server/runtime.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { exchange } from '../helpers/hostile.js';
import {
  AUDIENCE,
  claims,
  ISSUER,
  JwksServer,
  makeKey,
  rawToken,
  sign,
  type TestKey,
} from '../helpers/jwks.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

let upstream: Upstream;
let k1: TestKey;
let k2: TestKey;
let k3: TestKey;
beforeAll(async () => {
  upstream = await startUpstream();
  [k1, k2, k3] = await Promise.all([makeKey('k1'), makeKey('k2'), makeKey('k3')]);
});
afterAll(() => upstream.close());

const yaml = (jwksUrl: string, authExtra = '') => `
auth:${authExtra}
  jwt:
    algorithms: [RS256]
    issuer: "${ISSUER}"
    audience: ${AUDIENCE}
    jwksUrl: "${jwksUrl}"
    clockTolerance: 60s
rbac:
  roles:
    reader: [orders:read]
    writer: [orders:read, orders:write]
    admin: ["*"]
rateLimit:
  defaultTier: free
  tiers:
    anonymous: { limits: [{ requests: 100, per: 1m }] }
    free: { limits: [{ requests: 3, per: 1m }] }
    pro: { limits: [{ requests: 6, per: 1m }] }
services:
  echo: { targets: ["${upstream.url}"] }
routes:
  - { name: read, match: { path: /orders/**, methods: [GET] }, service: echo, auth: [jwt], permissions: [orders:read], rateLimit: "off" }
  - { name: write, match: { path: /orders/**, methods: [POST] }, service: echo, auth: [jwt], permissions: [orders:read, orders:write], rateLimit: "off" }
  - { name: limited, match: { path: /limited/** }, service: echo, auth: [jwt] }
  - { name: public, match: { path: /public/** }, service: echo }
`;

/** the same, every route needing a JWT */
const jwtOnlyYaml = (jwksUrl: string) =>
  yaml(jwksUrl)
    .replace(/^ {2}- \{ name: public, .*$/m, '')
    .replace(/^ {2}- \{ name: limited, .*$/m, '');

const readyz = async (gw: TestGateway) => {
  const res = await fetch(`${gw.adminUrl}/readyz?verbose`);
  return { status: res.status, body: (await res.json()) as { checks: Record<string, unknown> } };
};

type JwtAuthenticator = ReturnType<typeof createJwtAuthenticator>;
const jwtOf = (gw: TestGateway) =>
  (gw.gateway as unknown as { state: { runtime: Runtime } }).state.runtime.authenticators
    .jwt as JwtAuthenticator;

const bearer = (token: string, extra: Record<string, string> = {}) => ({
  headers: { authorization: `Bearer ${token}`, ...extra },
});
type Echo = { headers: Record<string, string | undefined> };

/** All values of a header in a raw header list, in order. */
const values = (raw: readonly string[], name: string) =>
  raw.filter((_v, i) => i % 2 === 1 && raw[i - 1]?.toLowerCase() === name);

/** An unsigned token claiming admin: what an attacker slips in beside a valid one. */
const forgedAdmin = () => rawToken({ alg: 'none', typ: 'JWT' }, claims({ sub: 'root', roles: ['admin'] }));

/** One request with exactly these header lines, on a fresh connection. */
async function rawGet(port: number, path: string, headerLines: string) {
  const { responses } = await exchange(
    port,
    `GET ${path} HTTP/1.1\r\nHost: gw.test\r\n${headerLines}Connection: close\r\n\r\n`,
  );
  expect(responses).toHaveLength(1);
  return responses[0] as NonNullable<(typeof responses)[0]>;
}

describe('JWT + RBAC through the gateway', () => {
  let jwks: JwksServer;
  let gw: TestGateway;
  beforeAll(async () => {
    jwks = await JwksServer.start([k1]);
    gw = await startGateway(yaml(jwks.url));
  });
  afterAll(async () => {
    await gw.close();
    await jwks.close();
  });

  it('401 without a token: WWW-Authenticate, problem+json, nothing upstream', async () => {
    const before = upstream.received.length;
    const res = await fetch(`${gw.url}/orders/1`);
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="gatehouse"');
    expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(await res.json()).toMatchObject({ status: 401, code: 'unauthenticated' });
    expect(upstream.received.length).toBe(before);
  });

  it('401 with an invalid token, which is never echoed back', async () => {
    const token = await sign(k1, { iss: 'https://evil.example/' });
    const res = await fetch(`${gw.url}/orders/1`, bearer(token));
    expect(res.status).toBe(401);
    // RFC 6750 §3: a token that was there but refused
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="gatehouse", error="invalid_token"');
    const text = await res.text();
    for (const part of token.split('.')) expect(text).not.toContain(part);
    // counted by method and kind, never by anything from the token
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(/gatehouse_auth_failures_total\{method="jwt",reason="invalid"\} [1-9]/);
    expect(metrics).toMatch(/gatehouse_auth_failures_total\{method="jwt",reason="absent"\} [1-9]/);
    expect(metrics).not.toContain(token.split('.')[1] ?? 'x');
  });

  it('ignores a token in the query string', async () => {
    const token = await sign(k1, { roles: ['reader'] });
    const res = await fetch(`${gw.url}/orders/1?access_token=${token}`);
    expect(res.status).toBe(401);
  });

  it('error="invalid_token" for every refused token (expired, future iat, malformed); none without a bearer token', async () => {
    const now = Math.floor(Date.now() / 1000);
    for (const authorization of [
      `Bearer ${await sign(k1, { roles: ['reader'], exp: now - 3600 })}`,
      `Bearer ${await sign(k1, { roles: ['reader'], iat: now + 3600 })}`,
      `BEARER ${await sign(k1, { roles: ['reader'], iat: 1e12 })}`,
      'Bearer not-a-jwt',
      'bearer a.b.c',
    ]) {
      const res = await fetch(`${gw.url}/orders/1`, { headers: { authorization } });
      expect(res.status, authorization.slice(0, 12)).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="gatehouse", error="invalid_token"');
    }
    // no credential of this scheme at all (RFC 6750 §3.1: no error code)
    for (const headers of [{}, { authorization: 'Basic dXNlcjpwYXNz' }]) {
      const res = await fetch(`${gw.url}/orders/1`, { headers });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer realm="gatehouse"');
    }
    // the scheme is case-insensitive (RFC 9110 §11.1)
    const good = await sign(k1, { roles: ['reader'] });
    for (const scheme of ['bearer', 'BEARER', 'bEaReR'])
      expect(
        (await fetch(`${gw.url}/orders/1`, { headers: { authorization: `${scheme} ${good}` } })).status,
      ).toBe(200);
  });

  it('/readyz?verbose reports jwtKeys once a key set is loaded', async () => {
    expect(await readyz(gw)).toMatchObject({ status: 200, body: { checks: { jwtKeys: true } } });
  });

  it('403 forbidden when a role lacks a permission (all are required)', async () => {
    const token = await sign(k1, { sub: 'rita', roles: ['reader'] });
    const ok = await fetch(`${gw.url}/orders/1`, bearer(token));
    expect(ok.status).toBe(200);
    const res = await fetch(`${gw.url}/orders/1`, { method: 'POST', body: '{}', ...bearer(token) });
    expect(res.status).toBe(403);
    expect(res.headers.get('www-authenticate')).toBeNull();
    expect(await res.json()).toMatchObject({ status: 403, code: 'forbidden' });
    const none = await sign(k1, { sub: 'nora' });
    expect((await fetch(`${gw.url}/orders/1`, bearer(none))).status).toBe(403);
    const unknown = await sign(k1, { sub: 'ursula', roles: ['superuser', 'root'] });
    expect((await fetch(`${gw.url}/orders/1`, bearer(unknown))).status).toBe(403);
    const admin = await sign(k1, { sub: 'ada', roles: ['admin'] });
    expect((await fetch(`${gw.url}/orders/1`, { method: 'POST', body: '{}', ...bearer(admin) })).status).toBe(
      200,
    );
  });

  it('200 with X-Consumer-Id/-Tier/-Roles upstream; client-sent X-Consumer-* never get through', async () => {
    const token = await sign(k1, { sub: 'wendy', roles: ['writer', 'reader'], tier: 'pro' });
    const res = await fetch(
      `${gw.url}/orders/1`,
      bearer(token, {
        'x-consumer-id': 'mallory',
        'x-consumer-roles': 'admin',
        'x-consumer-tier': 'gold',
        'x-consumer-extra': '1',
      }),
    );
    expect(res.status).toBe(200);
    const { headers } = (await res.json()) as Echo;
    expect(headers['x-consumer-id']).toBe('wendy');
    expect(headers['x-consumer-tier']).toBe('pro');
    expect(headers['x-consumer-roles']).toBe('writer,reader');
    expect(headers['x-consumer-extra']).toBeUndefined();
    const raw = upstream.received.at(-1)?.rawHeaders ?? [];
    expect(raw.filter((h) => h.toLowerCase() === 'x-consumer-id')).toHaveLength(1);
  });

  it('a public route strips client-sent X-Consumer-* too', async () => {
    const res = await fetch(`${gw.url}/public/x`, { headers: { 'x-consumer-id': 'mallory' } });
    expect(((await res.json()) as Echo).headers['x-consumer-id']).toBeUndefined();
  });

  it.each([
    [
      'valid first, forged second',
      (t: string, f: string) => `Authorization: Bearer ${t}\r\nAuthorization: Bearer ${f}\r\n`,
    ],
    [
      'forged first, valid second',
      (t: string, f: string) => `Authorization: Bearer ${f}\r\nAuthorization: Bearer ${t}\r\n`,
    ],
    [
      'different casings',
      (t: string, f: string) => `Authorization: Bearer ${t}\r\nAUTHORIZATION: bearer ${f}\r\n`,
    ],
    ['an empty second one', (t: string) => `authorization: Bearer ${t}\r\nAuthorization:\r\n`],
  ])('two Authorization headers (%s): 400, nothing upstream', async (_name, lines) => {
    const token = await sign(k1, { roles: ['reader'] });
    const before = upstream.received.length;
    for (const path of ['/orders/1', '/public/x']) {
      const res = await rawGet(gw.gateway.port, path, lines(token, forgedAdmin()));
      expect(res.status).toBe(400);
      expect(res.headers['content-type']).toBe('application/problem+json');
      expect(JSON.parse(res.body)).toMatchObject({
        code: 'bad_request',
        detail: 'multiple Authorization headers',
      });
    }
    expect(upstream.received.length).toBe(before);
  });

  it('the upstream gets exactly the verified token, as `Bearer <token>`, once', async () => {
    const token = await sign(k1, { sub: 'vera', roles: ['reader'] });
    const res = await rawGet(gw.gateway.port, '/orders/1', `authorization: bEaReR   ${token}  \r\n`);
    expect(res.status).toBe(200);
    const raw = upstream.received.at(-1)?.rawHeaders ?? [];
    expect(values(raw, 'authorization')).toEqual([`Bearer ${token}`]);
    expect(values(raw, 'x-consumer-id')).toEqual(['vera']);
  });

  it('a public route forwards Authorization unchanged (the upstream does its own auth)', async () => {
    const res = await rawGet(gw.gateway.port, '/public/x', 'Authorization: Basic dXNlcjpwYXNz\r\n');
    expect(res.status).toBe(200);
    expect(values(upstream.received.at(-1)?.rawHeaders ?? [], 'authorization')).toEqual([
      'Basic dXNlcjpwYXNz',
    ]);
  });

  it('the tier from the token feeds rate limiting', async () => {
    const free = await sign(k1, { sub: 'fred' }); // no tier: defaultTier free (3/min)
    const pro = await sign(k1, { sub: 'paula', tier: 'pro' }); // 6/min
    const statuses = async (token: string) => {
      const out: number[] = [];
      for (let i = 0; i < 8; i++) out.push((await fetch(`${gw.url}/limited/x`, bearer(token))).status);
      return out;
    };
    const f = await statuses(free);
    const p = await statuses(pro);
    expect(f.filter((s) => s === 200)).toHaveLength(3);
    expect(f.filter((s) => s === 429)).toHaveLength(5);
    expect(p.filter((s) => s === 200)).toHaveLength(6);
    expect(p.filter((s) => s === 429)).toHaveLength(2);
  });
});

describe('auth.forwardCredentials: false', () => {
  let jwks: JwksServer;
  let gw: TestGateway;
  beforeAll(async () => {
    jwks = await JwksServer.start([k1]);
    gw = await startGateway(yaml(jwks.url, '\n  forwardCredentials: false'));
  });
  afterAll(async () => {
    await gw.close();
    await jwks.close();
  });

  it('the verified token is not forwarded; the identity is', async () => {
    const token = await sign(k1, { sub: 'sam', roles: ['reader'] });
    const res = await fetch(`${gw.url}/orders/1`, bearer(token));
    expect(res.status).toBe(200);
    const raw = upstream.received.at(-1)?.rawHeaders ?? [];
    expect(values(raw, 'authorization')).toEqual([]);
    expect(values(raw, 'x-consumer-id')).toEqual(['sam']);
  });

  it('a public route still forwards Authorization unchanged', async () => {
    const res = await fetch(`${gw.url}/public/x`, bearer('opaque-token'));
    expect(res.status).toBe(200);
    expect(values(upstream.received.at(-1)?.rawHeaders ?? [], 'authorization')).toEqual([
      'Bearer opaque-token',
    ]);
  });
});

describe('JWKS rotation and outages through the gateway', () => {
  let jwks: JwksServer;
  let gw: TestGateway | undefined;
  afterEach(async () => {
    await gw?.close();
    gw = undefined;
    await jwks.close();
  });

  it('picks up a new kid (rotation), then keeps working with cached keys while the JWKS is down', async () => {
    jwks = await JwksServer.start([k1]);
    gw = await startGateway(yaml(jwks.url));
    expect((await fetch(`${gw.url}/orders/1`, bearer(await sign(k1, { roles: ['reader'] })))).status).toBe(
      200,
    );
    const startup = jwks.requests;
    jwks.setKeys([k1, k2]);
    const rotated = await fetch(
      `${gw.url}/orders/1`,
      bearer(await sign(k2, { sub: 'new', roles: ['reader'] })),
    );
    expect(rotated.status).toBe(200);
    expect(jwks.requests).toBe(startup + 1);
    jwks.mode = 'reset';
    for (const [key, sub] of [
      [k1, 'a'],
      [k2, 'b'],
    ] as const) {
      const res = await fetch(`${gw.url}/orders/1`, bearer(await sign(key, { sub, roles: ['reader'] })));
      expect(res.status).toBe(200);
    }
  });

  it('a key withdrawn by a refresh is refused from that refresh on, even for tokens whose verification was in flight', async () => {
    jwks = await JwksServer.start([k1, k2]);
    gw = await startGateway(yaml(jwks.url));
    const url = `${gw.url}/orders/1`;
    const claims = (sub: string) => ({ sub, roles: ['reader'] });
    const cached = await sign(k1, claims('cached'));
    expect((await fetch(url, bearer(cached))).status).toBe(200); // verified and cached

    // tokens signed by k1 whose verification holds k1 (taken from the set in force) until released
    const keys = jwtOf(gw).keys;
    const lookup = keys.lookup.bind(keys);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let held = 0;
    keys.lookup = async (header: JWSHeaderParameters): Promise<KeyLookup> => {
      const found = await lookup(header);
      if (header.kid === 'k1' && held < 8) {
        held++;
        await gate;
      }
      return found;
    };
    const streamed = await Promise.all(Array.from({ length: 8 }, (_, i) => sign(k1, claims(`s${i}`))));
    const inFlight = streamed.map((t) => fetch(url, bearer(t)));
    await expect.poll(() => held).toBe(8);

    // the provider withdraws k1 and adds k3; a k3 token makes the gateway refresh
    jwks.setKeys([k2, k3]);
    const before = jwks.requests;
    expect((await fetch(url, bearer(await sign(k3, claims('new'))))).status).toBe(200);
    expect(jwks.requests).toBe(before + 1);
    release();

    expect((await Promise.all(inFlight)).map((r) => r.status)).toEqual(Array(8).fill(401));
    for (const t of [cached, ...streamed, await sign(k1, claims('fresh'))])
      expect((await fetch(url, bearer(t))).status).toBe(401);
    expect((await fetch(url, bearer(await sign(k2, claims('kept'))))).status).toBe(200);
  });

  it('503 store_unavailable (not 401) for bearer tokens until a first key set loads; no token stays 401', async () => {
    jwks = await JwksServer.start([k1]);
    jwks.mode = 'error';
    gw = await startGateway(yaml(jwks.url)); // does not hang or fail: warns and retries
    const token = await sign(k1, { roles: ['reader'] });
    const res = await fetch(`${gw.url}/orders/1`, bearer(token));
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).not.toBeNull();
    expect(await res.json()).toMatchObject({ code: 'store_unavailable' });
    expect((await fetch(`${gw.url}/orders/1`)).status).toBe(401);
    jwks.mode = 'up';
    const url = `${gw.url}/orders/1`;
    await expect
      .poll(async () => (await fetch(url, bearer(token))).status, { timeout: 8000, interval: 250 })
      .toBe(200);
  }, 15_000);
});

describe('before any JWKS key set loaded', () => {
  let jwks: JwksServer;
  let gw: TestGateway | undefined;
  afterEach(async () => {
    await gw?.close();
    gw = undefined;
    await jwks.close();
  });

  it('answers 503 with Retry-After at once while the first fetch is pending, not after its 5 s timeout', async () => {
    jwks = await JwksServer.start([k1]);
    jwks.mode = 'error';
    gw = await startGateway(yaml(jwks.url));
    jwks.mode = 'hold'; // the next fetch hangs
    const token = await sign(k1, { roles: ['reader'] });
    const t0 = performance.now();
    const res = await fetch(`${gw.url}/orders/1`, bearer(token));
    // the short wait is 500 ms, the fetch timeout 5 s: a wide margin for a busy machine
    expect(performance.now() - t0).toBeLessThan(2500);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(await res.json()).toMatchObject({ code: 'store_unavailable' });
    expect(jwks.held).toBe(1); // answered while the fetch is still pending
    jwks.release();
    const url = `${gw.url}/orders/1`;
    await expect.poll(async () => (await fetch(url, bearer(token))).status, { timeout: 5000 }).toBe(200);
  });

  it('/readyz: degraded but ready when some route does without JWT; not ready when every route needs it', async () => {
    jwks = await JwksServer.start([k1]);
    jwks.mode = 'error';
    gw = await startGateway(yaml(jwks.url)); // has a public route
    expect(await readyz(gw)).toMatchObject({ status: 200, body: { checks: { jwtKeys: 'degraded' } } });
    await gw.close();

    gw = await startGateway(jwtOnlyYaml(jwks.url));
    expect(await readyz(gw)).toMatchObject({
      status: 503,
      body: { status: 'not ready', checks: { jwtKeys: false } },
    });
    jwks.mode = 'up';
    // a bearer request fetches the key set (the first unknown-kid fetch is allowed at once)
    const token = await sign(k1, { roles: ['reader'] });
    expect((await fetch(`${gw.url}/orders/1`, bearer(token))).status).toBe(200);
    expect(await readyz(gw)).toMatchObject({ status: 200, body: { checks: { jwtKeys: true } } });
  });
});
