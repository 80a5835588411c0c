/**
 * JWT and RBAC through the real gateway: 401 / 403 / 200, consumer headers upstream, key
 * rotation, a JWKS endpoint going down, 503 before any key set, and the tier feeding rate limits.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
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
beforeAll(async () => {
  upstream = await startUpstream();
  [k1, k2] = await Promise.all([makeKey('k1'), makeKey('k2')]);
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
    expect(res.headers.get('www-authenticate')).toBe('Bearer realm="gatehouse"');
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
