/** The admin `/keys` endpoints on a real gateway (PostgreSQL, private schema), behind the token. */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { expectProblem, request, type Reply } from '../helpers/http-client.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { createSchema, type PrivateSchema } from './api-keys-db.js';

const TOKEN = 'admin-token-for-keys-tests';
const SECRET = 'admin-keys-secret-0123456789abcdef';

let upstream: Upstream;
let schema: PrivateSchema;
let gw: TestGateway;

beforeAll(async () => {
  upstream = await startUpstream();
  schema = await createSchema();
  gw = await startGateway(`
admin: { host: 127.0.0.1, port: 0, token: '${TOKEN}' }
database: { url: '${schema.url}' }
services: { api: { targets: ['${upstream.url}'] } }
routes: [ { name: keyed, match: { path: /keyed/** }, service: api, auth: [apiKey] } ]
auth: { apiKey: { secret: '${SECRET}' } }
rbac: { roles: { reader: ['orders:read'] } }
logging: { level: silent }
`);
});
afterAll(async () => {
  await gw?.close();
  await upstream?.close();
  await schema?.drop();
});

const auth = { authorization: `Bearer ${TOKEN}` };
const json = (r: Reply) => JSON.parse(r.body.toString()) as Record<string, unknown>;
const admin = (path: string, method = 'GET', body?: unknown, headers: Record<string, string> = auth) =>
  request(`${gw.adminUrl}${path}`, {
    method,
    headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
/** SQL in the test's private schema */
async function schemaQuery(sql: string, params: unknown[]): Promise<void> {
  const c = new pg.Client({ connectionString: schema.url });
  await c.connect();
  try {
    await c.query(sql, params);
  } finally {
    await c.end();
  }
}
const call = (key: string) => request(`${gw.url}/keyed/x`, { headers: { 'x-api-key': key } });

describe('admin /keys', () => {
  it('requires the admin token', async () => {
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: TOKEN }]) {
      expectProblem(await admin('/keys', 'GET', undefined, headers), 401, 'unauthorized_admin');
      expectProblem(
        await admin('/keys', 'POST', { name: 'x', tier: 'free' }, headers),
        401,
        'unauthorized_admin',
      );
    }
  });

  it('create (key shown once), get, list, revoke', async () => {
    const created = await admin('/keys', 'POST', {
      name: 'acme',
      tier: 'pro',
      roles: ['reader'],
      expiresAt: new Date(Date.now() + 86_400_000).toISOString(),
    });
    expect(created.status).toBe(201);
    const body = json(created);
    const key = body.key as string;
    const id = body.id as string;
    expect(key).toMatch(/^gh_[0-9A-Za-z]{12}_[0-9A-Za-z]{43}$/);
    expect(body).toMatchObject({ name: 'acme', tier: 'pro', roles: ['reader'], revokedAt: null });
    expect(body.hash).toBeUndefined();
    expect((await call(key)).status).toBe(200);

    const got = await admin(`/keys/${id}`);
    expect(got.status).toBe(200);
    expect(json(got)).toMatchObject({ id, name: 'acme' });
    const list = await admin('/keys');
    expect(list.status).toBe(200);
    expect((json(list).keys as Array<{ id: string }>).map((k) => k.id)).toContain(id);
    for (const r of [got, list]) {
      expect(r.body.toString()).not.toContain(key.slice(16));
      expect(r.body.toString()).not.toContain('hash');
    }

    const revoked = await admin(`/keys/${id}`, 'DELETE');
    expect(revoked.status).toBe(200);
    expect(json(revoked).revokedAt).not.toBeNull();
    expectProblem(await call(key), 401, 'unauthenticated'); // this instance: at once
  });

  it('rotate returns a new key; the old one works during the grace period', async () => {
    const created = json(await admin('/keys', 'POST', { name: 'rot', tier: 'free' }));
    const rotated = await admin(`/keys/${created.id as string}/rotate`, 'POST', { grace: '1h' });
    expect(rotated.status).toBe(201);
    const body = json(rotated);
    expect(body.key).not.toBe(created.key);
    expect(body).toMatchObject({ name: 'rot', tier: 'free' });
    expect((body.previous as { revokedAt: string }).revokedAt).not.toBeNull();
    expect((await call(created.key as string)).status).toBe(200);
    expect((await call(body.key as string)).status).toBe(200);
    const now = await admin(`/keys/${body.id as string}/rotate`, 'POST', { grace: 0 });
    expect(now.status).toBe(201);
    expect((await call(body.key as string)).status).toBe(401);
    // "0" as a string too, as `gatehouse keys rotate --grace 0` takes it
    const third = json(now);
    const zero = await admin(`/keys/${third.id as string}/rotate`, 'POST', { grace: '0' });
    expect(zero.status).toBe(201);
    expect((await call(third.key as string)).status).toBe(401);
    expect((await call(json(zero).key as string)).status).toBe(200);
  });

  it('rotate refuses a key that is not active: 409 with a clear problem, and no new key', async () => {
    const expired = json(await admin('/keys', 'POST', { name: 'adm-expired', tier: 'free' }));
    await schemaQuery(`UPDATE api_keys SET expires_at = now() - interval '1 minute' WHERE id = $1`, [
      expired.id as string,
    ]);
    const r = await admin(`/keys/${expired.id as string}/rotate`, 'POST', { grace: '1h' });
    const p = expectProblem(r, 409, 'key_expired');
    expect(p.detail).toContain('expired at');
    expect(r.body.toString()).not.toMatch(/gh_[0-9A-Za-z]{12}_/);
    const named = (json(await admin('/keys')).keys as Array<{ name: string }>).filter(
      (k) => k.name === 'adm-expired',
    );
    expect(named).toHaveLength(1);

    const live = json(await admin('/keys', 'POST', { name: 'adm-rot', tier: 'free' }));
    expect((await admin(`/keys/${live.id as string}/rotate`, 'POST', { grace: '1h' })).status).toBe(201);
    expectProblem(await admin(`/keys/${live.id as string}/rotate`, 'POST', {}), 409, 'key_rotated');
    expect((await admin(`/keys/${live.id as string}`, 'DELETE')).status).toBe(200);
    expectProblem(await admin(`/keys/${live.id as string}/rotate`, 'POST', {}), 409, 'key_revoked');
  });

  it('bad requests and unknown keys', async () => {
    expectProblem(await admin('/keys', 'POST', { tier: 'free' }), 400, 'bad_request');
    expectProblem(
      await admin('/keys', 'POST', { name: 'x', tier: 'free', roles: ['nope'] }),
      400,
      'bad_request',
    );
    expectProblem(
      await admin('/keys', 'POST', { name: 'x', tier: 'free', expiresAt: 'yesterday' }),
      400,
      'bad_request',
    );
    expectProblem(
      await admin('/keys', 'POST', { name: 'x', tier: 'free', expiresAt: '2001-01-01T00:00:00Z' }),
      400,
      'bad_request',
    );
    const notJson = await request(`${gw.adminUrl}/keys`, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: '{nope',
    });
    expectProblem(notJson, 400, 'bad_request');
    expectProblem(await admin('/keys/AAAAAAAAAAAA'), 404, 'not_found');
    expectProblem(await admin('/keys/AAAAAAAAAAAA', 'DELETE'), 404, 'not_found');
    expectProblem(await admin('/keys/AAAAAAAAAAAA/rotate', 'POST', {}), 404, 'not_found');
    expectProblem(await admin("/keys/'%20OR%201=1", 'GET'), 404, 'not_found');
    expectProblem(await admin('/keys', 'PUT', {}), 405, 'method_not_allowed');
    const created = json(await admin('/keys', 'POST', { name: 'g', tier: 'free' }));
    expectProblem(
      await admin(`/keys/${created.id as string}/rotate`, 'POST', { grace: 'forever' }),
      400,
      'bad_request',
    );
  });
});
