/**
 * API keys through the real gateway on real PostgreSQL (a private schema): consumers upstream,
 * 401 otherwise, revocation broadcast between two gateways, and the database going away
 * (through a TCP relay the test closes): cached keys keep working, unknown keys get 503,
 * recovery is automatic. Plus the embedded SQLite store end to end.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, rotateKey } from '../../src/auth/api-keys/manage.js';
import { PostgresKeyRepository } from '../../src/stores/postgres-keys.js';
import { SqliteKeyRepository } from '../../src/stores/sqlite-keys.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { expectProblem, request } from '../helpers/http-client.js';
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
import { createSchema, tempSqliteFile, type PrivateSchema } from './api-keys-db.js';

const SECRET = 'integration-secret-0123456789abcdef';

const yaml = (upstream: Upstream, database: string) => `
database: ${database}
services: { api: { targets: ['${upstream.url}'] } }
routes:
  - { name: keyed, match: { path: /keyed/** }, service: api, auth: [apiKey] }
  - { name: open, match: { path: /open/** }, service: api }
auth: { apiKey: { secret: '${SECRET}' } }
logging: { level: silent }
`;

type Echo = { headers: Record<string, string> };
const echoed = (body: Buffer) => JSON.parse(body.toString()) as Echo;

let upstream: Upstream;
beforeAll(async () => {
  upstream = await startUpstream();
});
afterAll(async () => {
  await upstream.close();
});

/** A TCP relay to PostgreSQL that the test can cut and restore (on the same port). */
class Relay {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  port = 0;
  async start(): Promise<void> {
    const server = createServer((client) => {
      const pgSocket = connect(5432, '127.0.0.1');
      for (const s of [client, pgSocket]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => s.destroy());
      }
      client.pipe(pgSocket).pipe(client);
      client.on('close', () => pgSocket.destroy());
      pgSocket.on('close', () => client.destroy());
    });
    await new Promise<void>((r) => server.listen(this.port, '127.0.0.1', r));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }
  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    const server = this.server;
    if (server) await new Promise((r) => server.close(r));
    this.server = null;
  }
}

describe('api keys on PostgreSQL', () => {
  let schema: PrivateSchema;
  let repo: PostgresKeyRepository;
  let gw: TestGateway;
  beforeAll(async () => {
    schema = await createSchema();
    repo = new PostgresKeyRepository(schema.url);
    await repo.migrate();
    gw = await startGateway(yaml(upstream, `{ url: '${schema.url}' }`));
  });
  afterAll(async () => {
    await gw?.close();
    await repo?.close();
    await schema?.drop();
  });

  it('a valid key reaches the upstream with X-Consumer-* headers', async () => {
    const { key, record } = await createKey(repo, SECRET, {
      name: 'acme',
      tier: 'pro',
      roles: ['reader', 'writer'],
    });
    const r = await request(`${gw.url}/keyed/a`, { headers: { 'x-api-key': key } });
    expect(r.status).toBe(200);
    const h = echoed(r.body).headers;
    expect(h['x-consumer-id']).toBe(record.id);
    expect(h['x-consumer-tier']).toBe('pro');
    expect(h['x-consumer-roles']).toBe('reader,writer');
    // the key is the gateway's credential: it never reaches the upstream
    expect(h['x-api-key']).toBeUndefined();
  });

  it('no key, a wrong key, an unknown id: 401 with a challenge', async () => {
    const { key } = await createKey(repo, SECRET, { name: 'w', tier: 'free' });
    const wrong = key.slice(0, -4) + (key.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    for (const headers of [
      {},
      { 'x-api-key': wrong },
      { 'x-api-key': 'gh_AAAAAAAAAAAA_' + 'A'.repeat(43) },
    ]) {
      const r = await request(`${gw.url}/keyed/a`, { headers });
      expectProblem(r, 401, 'unauthenticated');
      expect(String(r.headers['www-authenticate'])).toContain('ApiKey');
    }
    expect((await request(`${gw.url}/open/a`)).status).toBe(200);
  });

  it('last use is written in the background', async () => {
    const { key, record } = await createKey(repo, SECRET, { name: 'lu', tier: 'free' });
    expect((await request(`${gw.url}/keyed/a`, { headers: { 'x-api-key': key } })).status).toBe(200);
    const deadline = Date.now() + 10_000;
    while ((await repo.get(record.id))?.lastUsedAt === null && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
    }
    expect((await repo.get(record.id))?.lastUsedAt).not.toBeNull();
  });

  it('a revocation is refused by every instance within 1 s', async () => {
    const gw2 = await startGateway(yaml(upstream, `{ url: '${schema.url}' }`));
    try {
      const { key, record } = await createKey(repo, SECRET, { name: 'rv', tier: 'free' });
      for (const g of [gw, gw2]) {
        expect((await request(`${g.url}/keyed/a`, { headers: { 'x-api-key': key } })).status).toBe(200);
      }
      await repo.revoke(record.id);
      await new Promise((r) => setTimeout(r, 1000));
      for (const g of [gw, gw2]) {
        expectProblem(
          await request(`${g.url}/keyed/a`, { headers: { 'x-api-key': key } }),
          401,
          'unauthenticated',
        );
      }
    } finally {
      await gw2.close();
    }
  });

  it('rotation: both keys work during the grace period, then only the new one', async () => {
    const { key, record } = await createKey(repo, SECRET, { name: 'ro', tier: 'free' });
    expect((await request(`${gw.url}/keyed/a`, { headers: { 'x-api-key': key } })).status).toBe(200);
    const rotation = await rotateKey(repo, SECRET, record.id, 1500);
    if (rotation.kind !== 'rotated') throw new Error(`not rotated: ${rotation.kind}`);
    const rotated = rotation;
    await new Promise((r) => setTimeout(r, 300));
    expect((await request(`${gw.url}/keyed/a`, { headers: { 'x-api-key': key } })).status).toBe(200);
    expect((await request(`${gw.url}/keyed/a`, { headers: { 'x-api-key': rotated.key } })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1400));
    expect((await request(`${gw.url}/keyed/a`, { headers: { 'x-api-key': key } })).status).toBe(401);
    expect((await request(`${gw.url}/keyed/a`, { headers: { 'x-api-key': rotated.key } })).status).toBe(200);
  });
});

describe('api keys while PostgreSQL is unreachable', () => {
  let schema: PrivateSchema;
  let repo: PostgresKeyRepository;
  const relay = new Relay();
  let gw: TestGateway;
  beforeAll(async () => {
    schema = await createSchema();
    repo = new PostgresKeyRepository(schema.url);
    await repo.migrate();
    await relay.start();
    const url = schema.url.replace('127.0.0.1:5432', `127.0.0.1:${relay.port}`);
    gw = await startGateway(yaml(upstream, `{ url: '${url}' }`));
  });
  afterAll(async () => {
    await gw?.close();
    await relay.stop();
    await repo?.close();
    await schema?.drop();
  });

  it('cached keys keep working, unknown ones get 503, recovery is automatic', async () => {
    const cached = await createKey(repo, SECRET, { name: 'c', tier: 'free' });
    const uncached = await createKey(repo, SECRET, { name: 'u', tier: 'free' });
    expect((await request(`${gw.url}/keyed/a`, { headers: { 'x-api-key': cached.key } })).status).toBe(200);
    await relay.stop();
    expect((await request(`${gw.url}/keyed/a`, { headers: { 'x-api-key': cached.key } })).status).toBe(200);
    const r = await request(`${gw.url}/keyed/a`, { headers: { 'x-api-key': uncached.key } });
    expectProblem(r, 503, 'store_unavailable');
    expect(r.body.toString()).not.toContain(uncached.key);
    // a malformed key needs no lookup: still 401
    expect((await request(`${gw.url}/keyed/a`, { headers: { 'x-api-key': 'nope' } })).status).toBe(401);
    await relay.start();
    const deadline = Date.now() + 10_000;
    let status = 0;
    while (Date.now() < deadline) {
      status = (await request(`${gw.url}/keyed/a`, { headers: { 'x-api-key': uncached.key } })).status;
      if (status === 200) break;
      await new Promise((res) => setTimeout(res, 200));
    }
    expect(status).toBe(200);
  });
});

describe('api keys when PostgreSQL is down at start', () => {
  it('starts, answers 503 for keys, and recovers (migrating then) when the database is back', async () => {
    const schema = await createSchema();
    const relay = new Relay();
    await relay.start();
    await relay.stop(); // the port is now closed
    const url = schema.url.replace('127.0.0.1:5432', `127.0.0.1:${relay.port}`);
    const gw = await startGateway(yaml(upstream, `{ url: '${url}' }`));
    const repo = new PostgresKeyRepository(schema.url);
    try {
      const fake = 'gh_AAAAAAAAAAAA_' + 'A'.repeat(43);
      expectProblem(
        await request(`${gw.url}/keyed/a`, { headers: { 'x-api-key': fake } }),
        503,
        'store_unavailable',
      );
      await relay.start();
      await repo.migrate();
      const { key } = await createKey(repo, SECRET, { name: 'late', tier: 'free' });
      const deadline = Date.now() + 10_000;
      let status = 0;
      while (Date.now() < deadline) {
        status = (await request(`${gw.url}/keyed/a`, { headers: { 'x-api-key': key } })).status;
        if (status === 200) break;
        await new Promise((res) => setTimeout(res, 200));
      }
      expect(status).toBe(200);
    } finally {
      await gw.close();
      await relay.stop();
      await repo.close();
      await schema.drop();
    }
  });
});

describe('api keys on embedded SQLite', () => {
  const db = tempSqliteFile();
  let gw: TestGateway;
  let repo: SqliteKeyRepository;
  beforeAll(async () => {
    gw = await startGateway(yaml(upstream, `{ file: '${db.file}' }`)); // migrates at start
    repo = new SqliteKeyRepository(db.file);
  });
  afterAll(async () => {
    await gw?.close();
    await repo?.close();
    db.remove();
  });

  it('created keys authenticate; revoked ones do not', async () => {
    const { key, record } = await createKey(repo, SECRET, { name: 's', tier: 'free', roles: ['r'] });
    const r = await request(`${gw.url}/keyed/a`, { headers: { 'x-api-key': key } });
    expect(r.status).toBe(200);
    expect(echoed(r.body).headers['x-consumer-id']).toBe(record.id);
    expect((await request(`${gw.url}/keyed/a`)).status).toBe(401);
  });
});

describe('credentials upstream on a route taking a JWT or an API key', () => {
  const db = tempSqliteFile();
  let gw: TestGateway;
  let repo: SqliteKeyRepository;
  let jwks: JwksServer;
  let jwtKey: TestKey;
  const values = (raw: readonly string[], name: string) =>
    raw.filter((_v, i) => i % 2 === 1 && raw[i - 1]?.toLowerCase() === name);
  const lastRaw = () => upstream.received.at(-1)?.rawHeaders ?? [];

  beforeAll(async () => {
    jwtKey = await makeKey('either-1');
    jwks = await JwksServer.start([jwtKey]);
    gw = await startGateway(`
database: { file: '${db.file}' }
services: { api: { targets: ['${upstream.url}'] } }
routes:
  - { name: either, match: { path: /either/** }, service: api, auth: [jwt, apiKey], rateLimit: "off" }
  - { name: jwt-only, match: { path: /jwt/** }, service: api, auth: [jwt], rateLimit: "off" }
  - { name: open, match: { path: /open/** }, service: api }
auth:
  apiKey: { secret: '${SECRET}' }
  jwt: { algorithms: [RS256], issuer: "${ISSUER}", audience: ${AUDIENCE}, jwksUrl: "${jwks.url}" }
logging: { level: silent }
`);
    repo = new SqliteKeyRepository(db.file);
  });
  afterAll(async () => {
    await gw?.close();
    await repo?.close();
    await jwks?.close();
    db.remove();
  });

  it('a valid key beside a forged JWT: the forged JWT is not forwarded, nor is the key', async () => {
    const { key, record } = await createKey(repo, SECRET, { name: 'k', tier: 'free', roles: ['r'] });
    const forged = rawToken({ alg: 'none', typ: 'JWT' }, claims({ sub: 'root', roles: ['admin'] }));
    const r = await request(`${gw.url}/either/a`, {
      headers: { 'x-api-key': key, authorization: `Bearer ${forged}` },
    });
    expect(r.status).toBe(200);
    expect(values(lastRaw(), 'x-consumer-id')).toEqual([record.id]);
    expect(values(lastRaw(), 'authorization')).toEqual([]);
    expect(values(lastRaw(), 'x-api-key')).toEqual([]);
  });

  it('a valid key beside any other Authorization (Basic): not forwarded', async () => {
    const { key } = await createKey(repo, SECRET, { name: 'b', tier: 'free' });
    const r = await request(`${gw.url}/either/a`, {
      headers: { 'x-api-key': key, authorization: 'Basic cm9vdDpyb290' },
    });
    expect(r.status).toBe(200);
    expect(values(lastRaw(), 'authorization')).toEqual([]);
  });

  it('a valid JWT beside an API key: the JWT is forwarded, the key is not', async () => {
    const { key } = await createKey(repo, SECRET, { name: 'j', tier: 'free' });
    const token = await sign(jwtKey, { sub: 'jill' });
    const r = await request(`${gw.url}/either/a`, {
      headers: { 'x-api-key': key, authorization: `Bearer ${token}` },
    });
    expect(r.status).toBe(200);
    expect(values(lastRaw(), 'x-consumer-id')).toEqual(['jill']);
    expect(values(lastRaw(), 'authorization')).toEqual([`Bearer ${token}`]);
    expect(values(lastRaw(), 'x-api-key')).toEqual([]);
  });

  it('an API key sent to a JWT-only route is not forwarded', async () => {
    const { key } = await createKey(repo, SECRET, { name: 'jo', tier: 'free' });
    const token = await sign(jwtKey, { sub: 'jo' });
    const r = await request(`${gw.url}/jwt/a`, {
      headers: { 'x-api-key': key, authorization: `Bearer ${token}` },
    });
    expect(r.status).toBe(200);
    expect(values(lastRaw(), 'x-api-key')).toEqual([]);
  });

  it('a public route forwards what the client sent (the gateway checked nothing there)', async () => {
    const r = await request(`${gw.url}/open/a`, {
      headers: { 'x-api-key': 'upstream-own-key', authorization: 'Basic cm9vdDpyb290' },
    });
    expect(r.status).toBe(200);
    expect(values(lastRaw(), 'x-api-key')).toEqual(['upstream-own-key']);
    expect(values(lastRaw(), 'authorization')).toEqual(['Basic cm9vdDpyb290']);
  });
});
