/**
 * The admin API end to end: two real gateways on one PostgreSQL schema (one counting in Redis,
 * under its own key prefix; one in memory), real upstreams, tokens of each role. Every endpoint,
 * its refusals, the audit log, and the OpenAPI document checked against what the server answers.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { Validator } from '@seriousme/openapi-schema-validator';
import fc from 'fast-check';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ADMIN_ROUTES } from '../../src/admin/admin-server.js';
import { Gateway } from '../../src/server/gateway.js';
import { configFrom, TestGateway } from '../helpers/gateway.js';
import { expectProblem, request, type Reply } from '../helpers/http-client.js';
import { writeTempConfig } from '../helpers/process.js';
import { closedPort, startUpstream, type Upstream } from '../helpers/upstream.js';
import { createSchema, type PrivateSchema } from './api-keys-db.js';

const ADMIN = 'admin-token-0123456789abcdef';
const READ = 'read-token-0123456789abcdef';
const OPS = 'ops-token-0123456789abcdef';
const SECRET = 'admin-api-secret-0123456789abcdef';
const PREFIX = `gh-admin-api-${randomBytes(4).toString('hex')}:`;

let a: Upstream;
let b: Upstream;
let schema: PrivateSchema;
let gw: TestGateway;
let gw2: TestGateway;
let file: string;
let configYaml: string;

const named = (name: string) =>
  startUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(name);
  });

const yaml = (dbUrl: string, redis: boolean, level = 'silent') => `
listen: { host: 127.0.0.1, port: 0 }
admin:
  host: 127.0.0.1
  port: 0
  token: ${ADMIN}
  readToken: ${READ}
  tokens: [ { id: ops-bot, token: ${OPS}, role: admin } ]
  auditEntries: 50
configWatch: false
database: { url: '${dbUrl}' }
${redis ? 'redis: { url: redis://127.0.0.1:6379 }' : ''}
services:
  api: { targets: ['${a.url}', '${b.url}'], balancer: round-robin }
routes:
  - { name: keyed, match: { path: /keyed/** }, service: api, auth: [apiKey] }
  - { name: orders, match: { path: /orders/*, methods: [GET] }, service: api, auth: [apiKey], permissions: [orders:read] }
  - { name: host-only, match: { host: '*.example.com', path: /orders/* }, service: api }
  - { name: open, match: { path: /open/** }, service: api, rateLimit: "off" }
auth: { apiKey: { secret: '${SECRET}' } }
rbac: { roles: { reader: ['orders:read'] } }
rateLimit:
  keyPrefix: '${PREFIX}'
  defaultTier: free
  tiers:
    free: { limits: [{ requests: 5, per: 1m }] }
    pro: { limits: [{ requests: 50, per: 1m }], quota: { requests: 1000, per: day } }
logging: { level: ${level} }
`;

beforeAll(async () => {
  [a, b] = await Promise.all([named('a'), named('b')]);
  schema = await createSchema();
  // a password in the URL (trust auth ignores it): GET /config must not show it
  const dbUrl = schema.url.replace('postgres://postgres@', 'postgres://postgres:db-password-42@');
  configYaml = yaml(dbUrl, true);
  file = writeTempConfig(configYaml);
  gw = new TestGateway(await Gateway.start(configFrom(configYaml), { configFile: file }));
  gw2 = new TestGateway(await Gateway.start(configFrom(yaml(dbUrl, false))));
});
afterAll(async () => {
  await Promise.all([gw?.close(), gw2?.close()]);
  await Promise.all([a?.close(), b?.close()]);
  await schema?.drop();
});

const json = (r: Reply) => JSON.parse(r.body.toString()) as Record<string, unknown>;
type Call = { token?: string; body?: unknown; raw?: string; type?: string; on?: TestGateway };
const call = (method: string, path: string, o: Call = {}) => {
  const headers: Record<string, string> = {};
  if (o.token !== '') headers.authorization = `Bearer ${o.token ?? ADMIN}`;
  const body = o.raw ?? (o.body === undefined ? undefined : JSON.stringify(o.body));
  if (body !== undefined) headers['content-type'] = o.type ?? 'application/json';
  return request(`${(o.on ?? gw).adminUrl}${path}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body }),
  });
};
const proxy = (path: string, key?: string, on = gw) =>
  request(`${on.url}${path}`, { headers: key ? { 'x-api-key': key } : {} });
const newKey = async (body: Record<string, unknown>) => {
  const r = await call('POST', '/keys', { body });
  expect(r.status).toBe(201);
  return json(r) as { id: string; key: string; tier: string };
};

describe('tokens and roles', () => {
  it('read tokens read, and get 403 read_only_token on every mutating endpoint', async () => {
    expect((await call('GET', '/status', { token: READ })).status).toBe(200);
    expect((await call('GET', '/keys', { token: READ })).status).toBe(200);
    for (const r of ADMIN_ROUTES.filter((x) => x.mutating)) {
      const path = r.path
        .replace('{id}', 'AAAAAAAAAAAA')
        .replace('{name}', 'api')
        .replace('{target}', new URL(a.url).host);
      const reply = await call(r.method, path, { token: READ, body: {} });
      expectProblem(reply, 403, 'read_only_token');
    }
  });

  it('401 for no token, a wrong one, a prefix of one, or one with a byte more', async () => {
    for (const token of ['', 'nope', ADMIN.slice(0, -1), `${ADMIN}x`, READ.toUpperCase()])
      expectProblem(await call('GET', '/status', { token }), 401, 'unauthorized_admin');
  });

  it('the audit log names the token by id, never the secret, and records refusals', async () => {
    await call('PUT', '/logging/level', { token: OPS, body: { level: 'silent' } });
    await call('PUT', '/logging/level', { token: READ, body: { level: 'debug' } });
    await call('PUT', '/logging/level', { token: 'wrong-token', body: { level: 'debug' } });
    const entries = json(await call('GET', '/audit?limit=3', { token: READ })).entries as Array<
      Record<string, unknown>
    >;
    expect(entries.map((e) => [e.tokenId, e.status, e.outcome, e.operationId])).toEqual([
      [null, 401, 'refused', 'setLogLevel'],
      ['read', 403, 'refused', 'setLogLevel'],
      ['ops-bot', 200, 'ok', 'setLogLevel'],
    ]);
    expect(entries[2]).toMatchObject({ method: 'PUT', path: '/logging/level', target: 'silent' });
    const text = JSON.stringify(json(await call('GET', '/audit')));
    for (const secret of [ADMIN, READ, OPS, 'wrong-token']) expect(text).not.toContain(secret);
    // GET /audit is not itself audited, and the buffer is bounded (admin.auditEntries: 50)
    for (let i = 0; i < 60; i++) await call('DELETE', '/drain');
    expect((json(await call('GET', '/audit?limit=1000')).entries as unknown[]).length).toBe(50);
  });
});

describe('requests are checked against their schemas', () => {
  it('unknown fields, malformed JSON, wrong content type, too large: 400 bad_request', async () => {
    const unknown = await call('POST', '/keys', { body: { name: 'x', tier: 'free', admin: true } });
    expect(expectProblem(unknown, 400, 'bad_request').detail).toBe(
      'body.admin: unknown key (expected one of: name, tier, roles, expiresAt)',
    );
    expectProblem(await call('PATCH', '/keys/AAAAAAAAAAAA', { body: { owner: 'x' } }), 400, 'bad_request');
    expectProblem(await call('PATCH', '/keys/AAAAAAAAAAAA', { body: {} }), 400, 'bad_request');
    expectProblem(await call('POST', '/keys', { raw: '{"name":' }), 400, 'bad_request');
    expectProblem(await call('POST', '/keys', { raw: '[1,2]' }), 400, 'bad_request');
    expectProblem(await call('POST', '/keys', { raw: 'null' }), 400, 'bad_request');
    expectProblem(
      await call('POST', '/keys', { raw: '{"name":"x","tier":"free"}', type: 'text/plain' }),
      400,
      'bad_request',
    );
    expectProblem(
      await call('POST', '/keys', { raw: JSON.stringify({ name: 'x'.repeat(20_000) }) }),
      400,
      'bad_request',
    );
    expectProblem(await call('PUT', '/logging/level', { body: { level: 'loud' } }), 400, 'bad_request');
    expectProblem(await call('PUT', '/logging/level', { body: { level: { $ne: 1 } } }), 400, 'bad_request');
    expectProblem(await call('POST', '/drain', { body: { force: true } }), 400, 'bad_request');
    // a query parameter the endpoint does not take, or one given twice
    expectProblem(await call('GET', '/status?debug=1'), 400, 'bad_request');
    // probes and scrapes ignore what a load balancer or Prometheus adds
    expect((await request(`${gw.adminUrl}/readyz?verbose&probe=lb`)).status).toBe(200);
    expect((await request(`${gw.adminUrl}/metrics?name[]=up`)).status).toBe(200);
    expectProblem(await call('GET', '/keys?limit=1&limit=2'), 400, 'bad_request');
  });

  it('hostile path parameters: refused (400) or nothing there (404), never acted on', async () => {
    const t = new URL(a.url).host;
    // refused as a request target, as on the proxy port: encoded separators, controls, bad escapes
    for (const path of [
      `/services/api/targets/..%2F..%2Fetc%2Fpasswd/disable`,
      `/services/..%2Fkeys/breaker/reset`,
      `/services/api/targets/${t}%00/disable`,
      `/services/api/targets/%ZZ/disable`,
      `/consumers/a%2Fb/usage`,
    ])
      expectProblem(await call('POST', path), 400, 'bad_request');
    // dot segments are resolved first: what is left is another path, not served
    expectProblem(await call('POST', `/services/api/targets/%2e%2e/disable`), 404, 'not_found');
    // parameters their schema refuses, or that name nothing
    for (const [method, path] of [
      ['GET', `/keys/${'A'.repeat(5000)}`],
      ['GET', `/consumers/${'x'.repeat(300)}/usage`],
      ['POST', `/services/api/targets/${t}%20OR%201=1/disable`],
      ['POST', `/services/nope/targets/${t}/disable`],
      ['POST', `/services/api/targets/127.0.0.1:1/disable`],
    ] as const)
      expectProblem(await call(method, path), 404, 'not_found');
    const services = json(await call('GET', '/services')).services as Array<{
      targets: Array<{ disabled: boolean }>;
    }>;
    expect(services[0]?.targets.every((x) => !x.disabled)).toBe(true);
  });

  it('unknown endpoints 404, known ones with another method 405 with Allow', async () => {
    expectProblem(await call('GET', '/nope'), 404, 'not_found');
    const r = await call('PUT', '/keys');
    expectProblem(r, 405, 'method_not_allowed');
    expect(r.headers.allow).toBe('POST, GET');
  });
});

describe('GET /status and GET /config', () => {
  it('status: version, commit, uptime, config hash, workers, stores', async () => {
    const s = json(await call('GET', '/status', { token: READ }));
    expect(s).toMatchObject({
      version: expect.stringMatching(/^\d+\.\d+\.\d+/),
      commit: null,
      workers: { count: 1, mode: 'single', pid: process.pid },
      draining: false,
      stores: { redis: 'ready', postgres: 'ready', keyStore: 'ready' },
    });
    const c = json(await call('GET', '/config', { token: READ }));
    expect((s.config as { hash: string }).hash).toBe(c.hash);
    // the same config on another instance hashes the same (the redacted view differs by redis only)
    expect(json(await call('GET', '/config', { on: gw2 })).hash).not.toBe(c.hash);
  });

  it('config: defaults applied, every secret redacted', async () => {
    const r = await call('GET', '/config', { token: READ });
    const text = r.body.toString();
    for (const secret of [ADMIN, READ, OPS, SECRET, 'db-password-42']) expect(text).not.toContain(secret);
    const config = json(r).config as Record<string, Record<string, unknown>>;
    expect(config.admin).toMatchObject({ token: '[redacted]', readToken: '[redacted]' });
    expect((config.admin?.tokens as Array<Record<string, string>>)[0]).toEqual({
      id: 'ops-bot',
      token: '[redacted]',
      role: 'admin',
    });
    expect((config.auth?.apiKey as Record<string, string>).secret).toBe('[redacted]');
    expect(String(config.database?.url)).toContain('postgres:redacted@');
    expect(config.limits?.bodySize).toBe(10 * 1024 * 1024); // a default
  });
});

describe('routes', () => {
  it('GET /routes: match order, stages, service', async () => {
    const routes = json(await call('GET', '/routes', { token: READ })).routes as Array<
      Record<string, unknown>
    >;
    // a host first; then, in different subtrees, any order is the router's (alphabetical here)
    expect(routes.map((r) => r.name)).toEqual(['host-only', 'keyed', 'open', 'orders']);
    expect(routes.find((r) => r.name === 'orders')).toMatchObject({
      host: null,
      path: '/orders/*',
      methods: ['GET'],
      service: 'api',
      stages: ['body-limit', 'authenticate', 'authorize', 'rate-limit'],
    });
    expect(routes.find((r) => r.name === 'open')?.stages).toEqual(['body-limit']);
  });

  it('GET /routes/match: the route and why, or why none', async () => {
    const m = (q: string) => call('GET', `/routes/match?${q}`, { token: READ }).then(json);
    expect(await m('method=GET&path=/orders/1')).toMatchObject({
      matched: true,
      route: { name: 'orders' },
      reason: 'path /orders/1 matches /orders/*; any host; method GET is listed',
    });
    expect(await m('method=GET&host=a.example.com:8080&path=/orders/1')).toMatchObject({
      route: { name: 'host-only' },
      host: 'a.example.com',
      candidates: [{ name: 'orders', refusedBecause: 'less specific than the route that matched' }],
    });
    expect(await m('method=POST&path=/orders/1')).toMatchObject({
      matched: false,
      route: null,
      candidates: [
        { name: 'orders', refusedBecause: 'method: takes GET' },
        { name: 'host-only', refusedBecause: 'host: requires *.example.com' },
      ],
    });
    expect(await m('method=GET&path=/nothing')).toMatchObject({
      matched: false,
      reason: 'no route pattern matches the path',
    });
    // normalised as the proxy port does
    expect(await m('method=GET&path=/open/a/../../orders/%31')).toMatchObject({
      normalizedPath: '/orders/1',
    });
    expectProblem(await call('GET', '/routes/match?path=/x'), 400, 'bad_request');
    expectProblem(await call('GET', `/routes/match?method=GET&path=${'a'.repeat(9000)}`), 400, 'bad_request');
  });
});

describe('keys', () => {
  it('pages with an opaque cursor, filtered by tier, status and name prefix', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++)
      ids.push((await newKey({ name: `page-${i}`, tier: i % 2 ? 'pro' : 'free' })).id);
    await call('DELETE', `/keys/${ids[4] as string}`);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = `/keys?limit=2&namePrefix=page-${cursor ? `&cursor=${cursor}` : ''}`;
      const page = json(await call('GET', q, { token: READ })) as {
        keys: Array<{ id: string }>;
        next: string | null;
      };
      seen.push(...page.keys.map((k) => k.id));
      cursor = page.next;
      pages++;
    } while (cursor !== null && pages < 10);
    expect(pages).toBe(3);
    expect(seen).toEqual([...ids].reverse()); // newest first, each once
    const pro = json(await call('GET', '/keys?tier=pro&namePrefix=page-')).keys as Array<{ name: string }>;
    expect(pro.map((k) => k.name)).toEqual(['page-3', 'page-1']);
    const revoked = json(await call('GET', '/keys?status=revoked&namePrefix=page-')).keys as Array<{
      name: string;
    }>;
    expect(revoked.map((k) => k.name)).toEqual(['page-4']);
    const active = json(await call('GET', '/keys?status=active&namePrefix=page-')).keys as unknown[];
    expect(active).toHaveLength(4);
    // a prefix is compared exactly: LIKE's wildcards are characters like any other
    expect(json(await call('GET', '/keys?namePrefix=page_')).keys).toEqual([]);
    expect(json(await call('GET', '/keys?namePrefix=%25')).keys).toEqual([]);
  });

  it('bad cursors and limits: 400', async () => {
    const good = (json(await call('GET', '/keys?limit=1')) as { next: string }).next;
    const forged = Buffer.from(JSON.stringify(['0 OR 1=1', 'AAAAAAAAAAAA'])).toString('base64url');
    for (const q of [
      'cursor=nope!',
      'cursor=',
      `cursor=${'A'.repeat(300)}`,
      `cursor=${forged}`,
      `cursor=${Buffer.from('{}').toString('base64url')}`,
      `cursor=${good.slice(0, -2)}`,
      'limit=0',
      'limit=-1',
      'limit=501',
      'limit=99999999999999999999',
      'limit=abc',
      'limit=1.5',
      'status=deleted',
    ])
      expectProblem(await call('GET', `/keys?${q}`), 400, 'bad_request');
  });

  it('PATCH edits name, tier, roles, expiry; every instance applies it within a second', async () => {
    const k = await newKey({ name: 'patched', tier: 'free' });
    // gw2 caches the key (no role: the route's permission is missing)
    expect((await proxy('/orders/1', k.key, gw2)).status).toBe(403);
    const expiresAt = new Date(Date.now() + 7 * 86_400_000).toISOString();
    const r = await call('PATCH', `/keys/${k.id}`, {
      token: OPS,
      body: { name: 'renamed', tier: 'pro', roles: ['reader'], expiresAt },
    });
    expect(json(r)).toMatchObject({ id: k.id, name: 'renamed', tier: 'pro', roles: ['reader'], expiresAt });
    await vi.waitFor(async () => expect((await proxy('/orders/1', k.key, gw2)).status).toBe(200), {
      timeout: 1500,
      interval: 50,
    });
    // the new tier's limits are what the proxy now applies
    expect((await proxy('/keyed/x', k.key, gw2)).headers['ratelimit-policy']).toContain('50');
    expectProblem(await call('PATCH', `/keys/${k.id}`, { body: { tier: 'gold' } }), 400, 'bad_request');
    expectProblem(await call('PATCH', `/keys/${k.id}`, { body: { roles: ['root'] } }), 400, 'bad_request');
    expectProblem(
      await call('PATCH', `/keys/${k.id}`, { body: { expiresAt: '2001-01-01T00:00:00Z' } }),
      400,
      'bad_request',
    );
    expect(json(await call('PATCH', `/keys/${k.id}`, { body: { expiresAt: null } })).expiresAt).toBeNull();
    expectProblem(await call('PATCH', '/keys/AAAAAAAAAAAA', { body: { name: 'x' } }), 404, 'not_found');
    const audit = json(await call('GET', '/audit?limit=10')).entries as Array<Record<string, unknown>>;
    expect(audit.find((e) => e.operationId === 'updateKey' && e.tokenId === 'ops-bot')).toMatchObject({
      target: k.id,
      status: 200,
    });
  });
});

describe('usage', () => {
  it('a key: counts and remaining per limit, from Redis and from memory; DELETE resets (audited)', async () => {
    const k = await newKey({ name: 'usage', tier: 'free' });
    for (let i = 0; i < 3; i++) expect((await proxy('/keyed/x', k.key)).status).toBe(200);
    expect((await proxy('/keyed/x', k.key, gw2)).status).toBe(200);
    const u = json(await call('GET', `/keys/${k.id}/usage`, { token: READ }));
    expect(u).toMatchObject({
      subject: `c:${k.id}`,
      usage: [
        {
          tier: 'free',
          limits: [{ name: '1m', kind: 'limit', limit: 5, current: 3, used: 3, remaining: 2 }],
        },
      ],
    });
    // the memory store of the other instance counted its own request
    expect(json(await call('GET', `/keys/${k.id}/usage`, { on: gw2 }))).toMatchObject({
      usage: [{ limits: [{ current: 1, remaining: 4 }] }],
    });
    // reading counts nothing
    expect(json(await call('GET', `/keys/${k.id}/usage`))).toMatchObject({
      usage: [{ limits: [{ current: 3 }] }],
    });
    expect(json(await call('DELETE', `/keys/${k.id}/usage`))).toEqual({
      subject: `c:${k.id}`,
      reset: ['free'],
    });
    expect(json(await call('GET', `/keys/${k.id}/usage`))).toMatchObject({
      usage: [{ limits: [{ current: 0, remaining: 5 }] }],
    });
    expect(json(await call('DELETE', `/keys/${k.id}/usage`, { on: gw2 }))).toMatchObject({ reset: ['free'] });
    expect(json(await call('GET', `/keys/${k.id}/usage`, { on: gw2 }))).toMatchObject({
      usage: [{ limits: [{ current: 0 }] }],
    });
    const audit = json(await call('GET', '/audit?limit=50')).entries as Array<Record<string, unknown>>;
    expect(audit[0]).toMatchObject({ operationId: 'resetKeyUsage', target: k.id, tokenId: 'admin' });
    expect(audit.find((e) => e.operationId === 'createKey' && e.target === k.id)).toMatchObject({
      status: 201,
      outcome: 'ok',
    });
    expectProblem(await call('GET', '/keys/AAAAAAAAAAAA/usage'), 404, 'not_found');
  });

  it('a consumer: every tier, or one; the quota shows too', async () => {
    const k = await newKey({ name: 'consumer', tier: 'pro' });
    await proxy('/keyed/x', k.key);
    const all = json(await call('GET', `/consumers/${k.id}/usage`)) as {
      usage: Array<{ tier: string; limits: unknown[] }>;
    };
    expect(all.usage.map((x) => x.tier)).toEqual(['free', 'pro']);
    expect(all.usage[1]?.limits).toMatchObject([
      { name: '1m', current: 1, remaining: 49 },
      { name: 'day', kind: 'quota', limit: 1000, current: 1, remaining: 999 },
    ]);
    const one = json(await call('GET', `/consumers/${k.id}/usage?tier=pro`)) as { usage: unknown[] };
    expect(one.usage).toHaveLength(1);
    expectProblem(await call('GET', `/consumers/${k.id}/usage?tier=gold`), 404, 'not_found');
    // a JWT subject with characters a key id cannot have
    expect((await call('GET', '/consumers/user@example.com|42/usage')).status).toBe(200);
  });
});

describe('services: targets out of rotation, breaker reset', () => {
  const hits = async (n: number) => {
    const seen: Record<string, number> = {};
    for (let i = 0; i < n; i++) {
      const body = (await proxy('/open/x')).body.toString();
      seen[body] = (seen[body] ?? 0) + 1;
    }
    return seen;
  };

  it('a disabled target gets no traffic and shows as disabled; enabled, it gets its share again', async () => {
    const target = new URL(a.url).host;
    const r = await call('POST', `/services/api/targets/${target}/disable`);
    expect(json(r)).toEqual({ service: 'api', target, disabled: true, processes: 1 });
    expect(await hits(6)).toEqual({ b: 6 });
    const services = json(await call('GET', '/services', { token: READ })).services as Array<{
      targets: Array<{ target: string; disabled: boolean }>;
    }>;
    expect(services[0]?.targets.find((t) => t.target === a.url)?.disabled).toBe(true);
    await call('POST', `/services/api/targets/${target}/enable`);
    expect(await hits(6)).toEqual({ a: 3, b: 3 });
  });

  it('every target disabled: nothing is sent (no panic onto a disabled target)', async () => {
    for (const u of [a, b]) await call('POST', `/services/api/targets/${new URL(u.url).host}/disable`);
    expectProblem(await proxy('/open/x'), 503, 'no_healthy_target');
    for (const u of [a, b]) await call('POST', `/services/api/targets/${new URL(u.url).host}/enable`);
    expect((await proxy('/open/x')).status).toBe(200);
  });

  it('breaker reset', async () => {
    expect(json(await call('POST', '/services/api/breaker/reset'))).toEqual({
      service: 'api',
      breaker: 'closed',
      processes: 1,
    });
    expectProblem(await call('POST', '/services/nope/breaker/reset'), 404, 'not_found');
  });
});

describe('log level and drain', () => {
  it('PUT /logging/level applies now; a reload restores the configured level', async () => {
    await call('PUT', '/logging/level', { body: { level: 'debug' } });
    expect(json(await call('GET', '/status')).logLevel).toBe('debug');
    writeFileSync(file, configYaml);
    expect((await call('POST', '/reload')).status).toBe(200);
    expect(json(await call('GET', '/status')).logLevel).toBe('silent');
  });

  it('POST /drain fails readiness and closes proxy connections; DELETE /drain undoes it', async () => {
    expect((await request(`${gw.adminUrl}/readyz`)).status).toBe(200);
    expect(json(await call('POST', '/drain'))).toEqual({ draining: true, processes: 1 });
    const ready = await request(`${gw.adminUrl}/readyz`);
    expect(ready.status).toBe(503);
    expect(json(ready)).toEqual({ status: 'draining' });
    // still serving, on connections that close after their response (clients move elsewhere)
    const agent = new Agent({ keepAlive: true });
    const served = await request(`${gw.url}/open/x`, { agent });
    expect(served.status).toBe(200);
    expect(served.headers.connection).toBe('close');
    expect(json(await call('GET', '/status')).draining).toBe(true);
    expect(json(await call('DELETE', '/drain'))).toEqual({ draining: false, processes: 1 });
    expect((await request(`${gw.adminUrl}/readyz`)).status).toBe(200);
    expect((await request(`${gw.url}/open/x`, { agent })).headers.connection).toBe('keep-alive');
    agent.destroy();
  });
});

describe('the OpenAPI document', () => {
  let doc: Record<string, unknown>;
  beforeAll(async () => {
    doc = json(await call('GET', '/openapi.json', { token: READ }));
  });

  it('is a valid OpenAPI 3.1 document', async () => {
    const validator = new Validator();
    const result = await validator.validate(doc);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');
    expect(doc.servers).toEqual([{ url: gw.adminUrl, description: expect.any(String) }]);
    expect(doc.components).toMatchObject({
      securitySchemes: { adminToken: { type: 'http', scheme: 'bearer' } },
    });
  });

  it('lists every route the server serves and nothing else', async () => {
    const paths = doc.paths as Record<string, Record<string, { operationId: string }>>;
    const documented = Object.entries(paths).flatMap(([p, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`),
    );
    expect(documented.sort()).toEqual(ADMIN_ROUTES.map((r) => `${r.method} ${r.path}`).sort());
    const ids = documented.map((d) => {
      const [m, p] = d.split(' ') as [string, string];
      return paths[p]?.[m.toLowerCase()]?.operationId;
    });
    expect(new Set(ids).size).toBe(ids.length);
    // every documented operation is served (answers something other than "no endpoint"/405)
    for (const d of documented) {
      const [m, p] = d.split(' ') as [string, string];
      const path = p.replace('{id}', 'AAAAAAAAAAAA').replace('{name}', 'api').replace('{target}', 'x:1');
      const r = await call(m, path, { token: READ });
      const body = r.body.toString();
      expect(r.status, d).not.toBe(405);
      expect(body, d).not.toContain('no admin endpoint');
    }
    // and what is not documented is not served
    for (const p of ['/admin', '/keys/AAAAAAAAAAAA/x', '/services/api', '/routes/x', '/openapi.yaml'])
      expect(json(await call('GET', p)).detail).toBe(`no admin endpoint ${p}`);
  });

  it("real answers validate against the document's response schemas", async () => {
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    ajv.addFormat('date-time', true);
    ajv.addFormat('uri', true);
    const paths = doc.paths as Record<
      string,
      Record<string, { responses: Record<string, { content?: Record<string, { schema: object }> }> }>
    >;
    const k = await newKey({ name: 'validated', tier: 'pro' });
    const checks: Array<[string, string, string, Call?]> = [
      ['GET', '/status', '/status'],
      ['GET', '/config', '/config'],
      ['GET', '/routes', '/routes'],
      ['GET', '/routes/match', '/routes/match?method=GET&path=/orders/1'],
      ['GET', '/services', '/services'],
      ['GET', '/keys', '/keys?limit=2'],
      ['GET', '/keys/{id}', `/keys/${k.id}`],
      ['PATCH', '/keys/{id}', `/keys/${k.id}`, { body: { name: 'validated-2' } }],
      ['GET', '/keys/{id}/usage', `/keys/${k.id}/usage`],
      ['GET', '/consumers/{id}/usage', `/consumers/${k.id}/usage`],
      ['GET', '/audit', '/audit'],
      ['GET', '/readyz', '/readyz?verbose'],
      ['PUT', '/logging/level', '/logging/level', { body: { level: 'silent' } }],
      ['POST', '/keys/{id}/rotate', `/keys/${k.id}/rotate`, { body: { grace: 0 } }],
    ];
    for (const [method, template, path, o] of checks) {
      const r = await call(method, path, o);
      const spec = paths[template]?.[method.toLowerCase()]?.responses[String(r.status)];
      const schema = spec?.content?.['application/json']?.schema;
      expect(schema, `${method} ${path} → ${r.status}`).toBeDefined();
      const valid = ajv.validate(schema as object, json(r));
      expect(ajv.errors ?? [], `${method} ${path}`).toEqual([]);
      expect(valid).toBe(true);
    }
    // a problem validates against the Problem schema
    const problemSchema = (doc.components as { schemas: { Problem: object } }).schemas.Problem;
    expect(ajv.validate(problemSchema, json(await call('GET', '/keys/AAAAAAAAAAAA')))).toBe(true);
  });
});

describe('fuzzing the admin port', () => {
  it('wrong kinds of credentials: an API key, a JWT, the token in another header', async () => {
    const k = await newKey({ name: 'not-an-admin', tier: 'free' });
    for (const authorization of [
      `Bearer ${k.key}`,
      'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.',
      `Basic ${Buffer.from(`admin:${ADMIN}`).toString('base64')}`,
      `Bearer ${ADMIN} ${ADMIN}`,
    ])
      expectProblem(
        await request(`${gw.adminUrl}/status`, { headers: { authorization } }),
        401,
        'unauthorized_admin',
      );
    expectProblem(
      await request(`${gw.adminUrl}/status`, { headers: { 'x-api-key': ADMIN } }),
      401,
      'unauthorized_admin',
    );
  });

  it('random methods, paths, queries and bodies: never a 5xx, never a crash', async () => {
    const segment = fc.oneof(
      fc.constantFrom(
        'keys',
        'services',
        'api',
        'targets',
        'usage',
        'consumers',
        'routes',
        'match',
        'drain',
        'AAAAAAAAAAAA',
        '..',
        '%2e',
        '%00',
        '%ZZ',
        '',
      ),
      fc.string({ maxLength: 12 }).map(encodeURIComponent),
    );
    const path = fc.array(segment, { minLength: 1, maxLength: 6 }).map((s) => `/${s.join('/')}`);
    const query = fc.dictionary(
      fc.constantFrom(
        'limit',
        'cursor',
        'tier',
        'status',
        'namePrefix',
        'method',
        'host',
        'path',
        'verbose',
        'x',
      ),
      fc.oneof(fc.string({ maxLength: 20 }), fc.integer().map(String), fc.constant('9'.repeat(30))),
      { maxKeys: 3 },
    );
    const body = fc.oneof(
      fc.constant(undefined),
      fc.json({ maxDepth: 3 }),
      fc.string({ maxLength: 50 }),
      fc
        .record(
          {
            name: fc.string(),
            tier: fc.string(),
            roles: fc.anything(),
            level: fc.string(),
            grace: fc.anything(),
          },
          { requiredKeys: [] },
        )
        .map((o) => JSON.stringify(o)),
    );
    const known = fc
      .constantFrom(...ADMIN_ROUTES.map((r) => r.path))
      .chain((p) => fc.tuple(fc.constant(p), fc.string({ maxLength: 10 })))
      .map(([p, v]) => p.replace(/\{[a-z]+\}/g, encodeURIComponent(v) || 'x'));
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'),
        fc.oneof(path, known),
        query,
        body,
        async (method, p, q, b) => {
          const qs = new URLSearchParams(q).toString();
          const headers: Record<string, string> = { authorization: `Bearer ${ADMIN}` };
          if (b !== undefined) headers['content-type'] = 'application/json';
          const r = await request(`${gw.adminUrl}${p}${qs ? `?${qs}` : ''}`, {
            method,
            headers,
            ...(b === undefined || method === 'GET' || method === 'HEAD' ? {} : { body: b }),
          });
          expect(r.status, `${method} ${p}?${qs} ${String(b)}`).toBeLessThan(500);
        },
      ),
      { seed: 20261205, numRuns: 300 },
    );
    // what the fuzz may have changed here
    await call('DELETE', '/drain');
    await call('PUT', '/logging/level', { body: { level: 'silent' } });
    expect((await request(`${gw.adminUrl}/livez`)).status).toBe(200);
  });
});

describe('GET /status with its stores down', () => {
  it('names Redis and PostgreSQL unavailable (and still answers)', async () => {
    const [redisPort, pgPort] = [await closedPort(), await closedPort()];
    const down = new TestGateway(
      await Gateway.start(
        configFrom(`
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
database: { url: 'postgres://postgres@127.0.0.1:${pgPort}/test' }
redis: { url: 'redis://127.0.0.1:${redisPort}' }
services: { api: { targets: ['${a.url}'] } }
routes: [ { name: keyed, match: { path: /keyed/** }, service: api, auth: [apiKey] } ]
auth: { apiKey: { secret: '${SECRET}' } }
rateLimit: { tiers: { free: { limits: [{ requests: 5, per: 1m }] } } }
logging: { level: silent }
`),
      ),
    );
    try {
      const s = json(await request(`${down.adminUrl}/status`));
      expect(s.stores).toEqual({ redis: 'unavailable', postgres: 'unavailable', keyStore: 'unavailable' });
    } finally {
      await down.close();
    }
  });
});
