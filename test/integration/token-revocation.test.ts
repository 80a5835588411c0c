/**
 * JWT revocation through real gateways (in-process) sharing one Redis key prefix: a token revoked
 * by its jti, and every token of a subject, refused on every instance within a second, with the
 * distinct `token_revoked` problem; a new instance refusing them from its first request; an
 * instance whose Redis connection was cut (it missed the message) catching up when it is back;
 * a lost message caught by the periodic resync; Redis down at start (closed: 503 and not ready;
 * open: accepted, degraded); a Redis Cluster; the admin endpoints' hostile input, audit lines,
 * metrics and readiness.
 */
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Gateway } from '../../src/server/gateway.js';
import { configFrom, TestGateway } from '../helpers/gateway.js';
import { JwksServer, makeKey, sign, type TestKey } from '../helpers/jwks.js';
import { writeTempConfig } from '../helpers/process.js';
import { startRedisCluster } from '../helpers/redis-cluster.js';
import { startRedisServer } from '../helpers/redis-server.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const ADMIN_TOKEN = 'revocation-test-admin-token';
const prefix = `test-revocation-${randomUUID().slice(0, 8)}:`;

let upstream: Upstream;
let key: TestKey;
let jwks: JwksServer;
let redis: Redis;
const gateways: TestGateway[] = [];

beforeAll(async () => {
  upstream = await startUpstream();
  key = await makeKey('rev');
  jwks = await JwksServer.start([key]);
  redis = new Redis(REDIS_URL);
});
afterAll(async () => {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
  await Promise.all([upstream.close(), jwks.close()]);
});
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((g) => g.close()));
});

type Redisish = { url: string } | { cluster: readonly string[] };

const yaml = (store: Redisish, revocation = '', keyPrefix = prefix) => `
admin: { host: 127.0.0.1, port: 0, token: ${ADMIN_TOKEN} }
${'url' in store ? `redis: { url: "${store.url}" }` : `redis: { cluster: [${store.cluster.map((u) => `"${u}"`).join(', ')}] }`}
auth:
  jwt:
    issuer: "https://auth.example.test/"
    audience: orders-api
    jwksUrl: "${jwks.url}"
    clockTolerance: 60s
    revocation: { keyPrefix: "${keyPrefix}"${revocation} }
services:
  echo: { targets: ["${upstream.url}"] }
routes:
  - { name: api, match: { path: /api/** }, service: echo, auth: [jwt], rateLimit: "off" }
`;

/** a gateway whose log lines are kept (the audit lines are read from them) */
async function start(text: string): Promise<TestGateway & { logs: string[] }> {
  const logs: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      logs.push(chunk.toString());
      done();
    },
  });
  const full = `listen: { host: 127.0.0.1, port: 0 }\n${text}`;
  const gw = new TestGateway(
    await Gateway.start(configFrom(full), { logger: pino({ level: 'info' }, stream) }),
  );
  gateways.push(gw);
  return Object.assign(gw, { logs });
}

const call = async (gw: TestGateway, token: string) => {
  const res = await fetch(`${gw.url}/api/orders`, { headers: { authorization: `Bearer ${token}` } });
  const text = await res.text();
  const code = res.headers.get('content-type')?.includes('problem')
    ? (JSON.parse(text) as { code: string }).code
    : null;
  return { status: res.status, code, challenge: res.headers.get('www-authenticate') };
};

const admin = async (gw: TestGateway, path: string, body?: string, headers: Record<string, string> = {}) => {
  const res = await fetch(`${gw.adminUrl}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};

const revokeJti = (gw: TestGateway, jti: string, exp?: number) =>
  admin(gw, '/tokens/revoke', JSON.stringify(exp === undefined ? { jti } : { jti, exp }));
const revokeSubject = (gw: TestGateway, sub: string) =>
  admin(gw, `/consumers/${encodeURIComponent(sub)}/revoke-tokens`);

const readiness = async (gw: TestGateway) => {
  const res = await fetch(`${gw.adminUrl}/readyz?verbose`);
  return { status: res.status, checks: ((await res.json()) as { checks: Record<string, unknown> }).checks };
};

const metrics = async (gw: TestGateway) => (await fetch(`${gw.adminUrl}/metrics`)).text();

/** ms until `probe` returns true (polled every 10 ms), or throws after `timeoutMs` */
async function within(timeoutMs: number, probe: () => Promise<boolean>): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    if (await probe()) return performance.now() - t0;
    if (performance.now() - t0 > timeoutMs) throw new Error(`not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const refused = (gw: TestGateway, token: string) => async () =>
  (await call(gw, token)).code === 'token_revoked';

describe('token revocation on several instances (one Redis)', () => {
  it('a jti revoked on one instance is refused there at once and on the others within 1 s', async () => {
    const [a, b] = await Promise.all([start(yaml({ url: REDIS_URL })), start(yaml({ url: REDIS_URL }))]);
    const jti = `jti-${randomUUID()}`;
    const token = await sign(key, { sub: 'alice', jti });
    const sibling = await sign(key, { sub: 'alice', jti: `${jti}-other` });
    // both instances have the token in their verified-token cache
    for (const gw of [a, b]) expect((await call(gw, token)).status).toBe(200);

    const res = await revokeJti(a, jti);
    expect(res.status).toBe(200);
    expect(res.body.jti).toBe(jti);
    expect(Date.parse(res.body.keptUntil as string)).toBeGreaterThan(
      Date.parse(res.body.revokedAt as string),
    );

    const onA = await call(a, token);
    expect(onA).toEqual({
      status: 401,
      code: 'token_revoked',
      challenge: expect.stringContaining('invalid_token'),
    });
    expect(await within(1000, refused(b, token))).toBeLessThan(1000);
    // the same subject's other token is untouched
    for (const gw of [a, b]) expect((await call(gw, sibling)).status).toBe(200);

    // audited on the instance that did it: action and target, not the token
    const audit = a.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.audit === true);
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({
      operationId: 'revokeToken',
      target: `jti:${jti}`,
      tokenId: 'admin',
      outcome: 'ok',
    });
    expect(a.logs.join('')).not.toContain(token);
    expect(await metrics(a)).toMatch(/^gatehouse_tokens_revoked_total\{kind="jti"\} 1$/m);
    expect(await metrics(b)).toMatch(
      /^gatehouse_auth_failures_total\{method="jwt",reason="revoked"\} [1-9]/m,
    );
    for (const gw of [a, b]) {
      expect(await metrics(gw)).toMatch(/^gatehouse_token_denylist_entries\{kind="jti"\} [1-9]/m);
      expect(await metrics(gw)).toMatch(/^gatehouse_token_denylist_resync_age_seconds \d/m);
      expect(await readiness(gw)).toMatchObject({ status: 200, checks: { tokenRevocation: true } });
    }
  });

  it("a subject's older tokens, with or without jti, are refused everywhere; one issued in a later second is accepted", async () => {
    const [a, b] = await Promise.all([start(yaml({ url: REDIS_URL })), start(yaml({ url: REDIS_URL }))]);
    const sub = `carol|${randomUUID()}`; // an IdP-style id: percent-encoded in the path
    const now = Math.floor(Date.now() / 1000);
    const withJti = await sign(key, { sub, jti: randomUUID(), iat: now - 30 });
    const noJti = await sign(key, { sub, iat: now - 30 });
    for (const gw of [a, b]) for (const t of [withJti, noJti]) expect((await call(gw, t)).status).toBe(200);

    const res = await revokeSubject(b, sub);
    expect(res.status).toBe(200);
    expect(res.body.consumer).toBe(sub);
    const revokedAt = Date.parse(res.body.revokedAt as string);
    expect(Math.abs(revokedAt - Date.now())).toBeLessThan(5000); // Redis's clock, same machine

    for (const t of [withJti, noJti]) {
      expect((await call(b, t)).code).toBe('token_revoked');
      await within(1000, refused(a, t));
    }
    // the user logs in again: a token issued in the next second passes everywhere
    const next = await sign(key, { sub, jti: randomUUID(), iat: Math.floor(revokedAt / 1000) + 1 });
    for (const gw of [a, b]) expect((await call(gw, next)).status).toBe(200);
  });

  it('a new instance refuses revoked tokens from its first request', async () => {
    const a = await start(yaml({ url: REDIS_URL }));
    const jti = `jti-${randomUUID()}`;
    const sub = `dave-${randomUUID()}`;
    const byJti = await sign(key, { sub: 'someone', jti });
    const bySub = await sign(key, { sub, iat: Math.floor(Date.now() / 1000) - 5 });
    expect((await revokeJti(a, jti)).status).toBe(200);
    expect((await revokeSubject(a, sub)).status).toBe(200);
    await a.close();

    const c = await start(yaml({ url: REDIS_URL }));
    expect((await call(c, byJti)).code).toBe('token_revoked');
    expect((await call(c, bySub)).code).toBe('token_revoked');
  });

  it('an instance cut from Redis misses the message, and catches up when it is back', async () => {
    const proxy = new TcpProxy(Number(new URL(REDIS_URL).port || 6379), new URL(REDIS_URL).hostname);
    await proxy.start();
    try {
      const [a, d] = await Promise.all([start(yaml({ url: REDIS_URL })), start(yaml({ url: proxy.url }))]);
      const jti = `jti-${randomUUID()}`;
      const token = await sign(key, { sub: 'erin', jti });
      expect((await call(d, token)).status).toBe(200);

      proxy.cut();
      expect((await revokeJti(a, jti)).status).toBe(200);
      await within(1000, refused(a, token));
      // d did not hear it: it keeps the list it had (the control: the test can fail)
      await new Promise((r) => setTimeout(r, 300));
      expect((await call(d, token)).status).toBe(200);
      expect((await readiness(d)).checks.tokenRevocation).toBe('degraded');

      proxy.restore();
      // reconnection backs off up to 2 s; then the subscription comes back and a resync reads all
      await within(8000, refused(d, token));
      await within(2000, async () => (await readiness(d)).checks.tokenRevocation === true);
    } finally {
      await proxy.close();
    }
  });

  it('a revocation whose message was lost is applied at the next periodic resync', async () => {
    const d = await start(yaml({ url: REDIS_URL }, ', resyncInterval: 1s'));
    const jti = `jti-${randomUUID()}`;
    const token = await sign(key, { sub: 'frank', jti });
    expect((await call(d, token)).status).toBe(200);
    // written to the denylist without the message (a publish that failed)
    await redis.zadd(`${prefix}{revoked}:jti`, Date.now() + 60_000, jti);
    await within(4000, refused(d, token));
  });
});

describe('Redis unreachable at start', () => {
  it('closed (default): bearer tokens get 503 and the instance is not ready until the denylist is read; open: accepted, degraded', async () => {
    const server = await startRedisServer();
    try {
      await server.stop();
      const [closed, open] = await Promise.all([
        start(yaml({ url: server.url })),
        start(yaml({ url: server.url }, ', onUnavailable: open')),
      ]);
      const token = await sign(key, { sub: 'gina', jti: randomUUID() });
      expect(await call(closed, token)).toMatchObject({ status: 503, code: 'store_unavailable' });
      expect(await readiness(closed)).toMatchObject({ status: 503, checks: { tokenRevocation: false } });
      expect((await call(open, token)).status).toBe(200);
      expect(await readiness(open)).toMatchObject({ status: 200, checks: { tokenRevocation: 'degraded' } });
      // nothing can be revoked meanwhile: said so, not pretended
      const refusedRevoke = await revokeJti(open, 'some-jti');
      expect(refusedRevoke.status).toBe(503);
      expect(refusedRevoke.body.code).toBe('store_unavailable');

      await server.start();
      await within(8000, async () => (await call(closed, token)).status === 200);
      await within(2000, async () => (await readiness(closed)).status === 200);
      expect((await revokeSubject(open, 'gina')).status).toBe(200);
      await within(1000, refused(closed, token));
    } finally {
      await server.close();
    }
  }, 30_000);
});

describe('reload', () => {
  it('a rebuilt JWT authenticator takes the denylist over: still enforced with Redis down, no 503', async () => {
    const server = await startRedisServer();
    try {
      const text = (interval: string) =>
        `listen: { host: 127.0.0.1, port: 0 }\n${yaml({ url: server.url }, `, resyncInterval: ${interval}`)}`;
      const file = writeTempConfig(text('30s'));
      const gw = new TestGateway(await Gateway.start(configFrom(text('30s')), { configFile: file }));
      gateways.push(gw);
      const jti = `jti-${randomUUID()}`;
      const token = await sign(key, { sub: 'kate', jti });
      expect((await revokeJti(gw, jti)).status).toBe(200);
      expect((await call(gw, token)).code).toBe('token_revoked');

      await server.stop();
      writeFileSync(file, text('20s')); // auth.jwt changed: the authenticator is rebuilt
      expect(await gw.gateway.reload()).toMatchObject({ ok: true });
      expect((await call(gw, token)).code).toBe('token_revoked');
      expect((await call(gw, await sign(key, { sub: 'kate', jti: randomUUID() }))).status).toBe(200);
      expect(await readiness(gw)).toMatchObject({ status: 200, checks: { tokenRevocation: 'degraded' } });
    } finally {
      await server.close();
    }
  });
});

describe('token revocation on a Redis Cluster', () => {
  it('replicates revocations between instances and to a new one', async () => {
    const cluster = await startRedisCluster();
    try {
      const store = { cluster: cluster.urls };
      const [a, b] = await Promise.all([start(yaml(store)), start(yaml(store))]);
      const jti = `jti-${randomUUID()}`;
      const byJti = await sign(key, { sub: 'hank', jti });
      const bySub = await sign(key, { sub: 'ivy', iat: Math.floor(Date.now() / 1000) - 5 });
      for (const gw of [a, b]) for (const t of [byJti, bySub]) expect((await call(gw, t)).status).toBe(200);
      expect((await revokeJti(a, jti)).status).toBe(200);
      expect((await revokeSubject(b, 'ivy')).status).toBe(200);
      for (const gw of [a, b]) {
        await within(1000, refused(gw, byJti));
        await within(1000, refused(gw, bySub));
      }
      const c = await start(yaml(store));
      expect((await call(c, byJti)).code).toBe('token_revoked');
      expect((await call(c, bySub)).code).toBe('token_revoked');
    } finally {
      await Promise.all(gateways.splice(0).map((g) => g.close()));
      await cluster.close();
    }
  }, 60_000);
});

describe('admin endpoints: hostile input', () => {
  it('refuses what is not a well-formed revocation with 400, and keeps serving', async () => {
    const a = await start(yaml({ url: REDIS_URL }));
    const bad: Array<[string, string | undefined, Record<string, string>?]> = [
      ['/tokens/revoke', JSON.stringify({ jti: 'x'.repeat(257) })],
      ['/tokens/revoke', JSON.stringify({ jti: '' })],
      ['/tokens/revoke', JSON.stringify({ jti: 42 })],
      ['/tokens/revoke', JSON.stringify({})],
      ['/tokens/revoke', JSON.stringify({ jti: 'a', exp: 'soon' })],
      ['/tokens/revoke', JSON.stringify({ jti: 'a', exp: 1e12 })],
      ['/tokens/revoke', JSON.stringify({ jti: 'a', sub: 'b' })], // unknown field
      ['/tokens/revoke', '{"jti": "a",'], // malformed JSON
      ['/tokens/revoke', '["a"]'],
      ['/tokens/revoke', JSON.stringify({ jti: 'a' }), { 'content-type': 'text/plain' }],
      ['/tokens/revoke', JSON.stringify({ jti: 'a'.repeat(10_000) })], // over the body limit
      ['/tokens/revoke', undefined],
      ['/consumers/%E0%A4%A/revoke-tokens', undefined], // broken percent-encoding
      ['/consumers/alice/revoke-tokens', JSON.stringify({ force: true })],
    ];
    for (const [path, body, headers] of bad) {
      const res = await admin(a, path, body, headers);
      expect({ path, body: body?.slice(0, 40), status: res.status, code: res.body.code }).toMatchObject({
        status: 400,
        code: 'bad_request',
      });
    }
    // a consumer id no consumer can have is no resource: 404, as on every admin path
    expect((await admin(a, `/consumers/${'u'.repeat(300)}/revoke-tokens`)).status).toBe(404);
    const get = await fetch(`${a.adminUrl}/tokens/revoke`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(get.status).toBe(405);
    const anonymous = await fetch(`${a.adminUrl}/tokens/revoke`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ jti: 'a' }),
    });
    expect(anonymous.status).toBe(401);
    // every refused call is audited as refused (the anonymous one without a token id); none as done
    const audited = a.logs
      .filter((l) => l.includes('"audit":true'))
      .map((l) => JSON.parse(l) as { outcome: string });
    expect(audited.length).toBeGreaterThan(0);
    expect(audited.filter((e) => e.outcome !== 'refused')).toEqual([]);
    // an empty JSON object is fine for a subject; the gateway still serves
    expect((await admin(a, '/consumers/nobody-at-all/revoke-tokens', '{}')).status).toBe(200);
    expect((await call(a, await sign(key, { sub: 'still-fine' }))).status).toBe(200);
  });

  it('answers 409 token_revocation_unavailable when revocation is not configured', async () => {
    const a = await start(yaml({ url: REDIS_URL }, ', enabled: false'));
    const res = await revokeJti(a, 'a');
    expect(res.status).toBe(409);
    expect(res.body.code).toBe('token_revocation_unavailable');
    expect((await readiness(a)).checks.tokenRevocation).toBeUndefined();
  });
});
