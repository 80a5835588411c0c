/**
 * Hostile API keys through the real gateway (embedded SQLite): wrong secret with a valid id,
 * another key's id with this secret, revoked, expired, malformed, in the query string; and the
 * key never showing up in logs, error bodies or listings.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey } from '../../src/auth/api-keys/manage.js';
import { viewOf } from '../../src/auth/api-keys/manage.js';
import { Gateway } from '../../src/server/gateway.js';
import { SqliteKeyRepository } from '../../src/stores/sqlite-keys.js';
import { configFrom, TestGateway } from '../helpers/gateway.js';
import { expectProblem, request } from '../helpers/http-client.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { tempSqliteFile } from '../integration/api-keys-db.js';

const SECRET = 'security-secret-0123456789abcdef';
const db = tempSqliteFile();
let upstream: Upstream;
let gw: TestGateway;
let repo: SqliteKeyRepository;
let logs = '';

beforeAll(async () => {
  upstream = await startUpstream();
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logs += chunk.toString();
      done();
    },
  });
  const config = configFrom(`
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
database: { file: '${db.file}' }
services: { api: { targets: ['${upstream.url}'] } }
routes: [ { name: keyed, match: { path: /keyed/** }, service: api, auth: [apiKey] } ]
auth: { apiKey: { secret: '${SECRET}' } }
logging: { level: trace }
`);
  gw = new TestGateway(await Gateway.start(config, { logger: pino({ level: 'trace' }, sink) }));
  repo = new SqliteKeyRepository(db.file);
});
afterAll(async () => {
  await gw?.close();
  await repo?.close();
  await upstream?.close();
  db.remove();
});

const call = (headers: Record<string, string>, path = '/keyed/x') => request(`${gw.url}${path}`, { headers });
const used: string[] = [];
async function newKey(over: { expiresAt?: Date } = {}) {
  const created = await createKey(repo, SECRET, { name: 'sec', tier: 'free', ...over });
  used.push(created.key);
  return created;
}

describe('api key attacks', () => {
  it('a wrong secret with a valid id', async () => {
    const { key } = await newKey();
    expect((await call({ 'x-api-key': key })).status).toBe(200);
    const secret = key.slice(16);
    for (const forged of [
      `${key.slice(0, 16)}${'A'.repeat(43)}`,
      `${key.slice(0, 16)}${secret.slice(0, -1)}${secret.endsWith('A') ? 'B' : 'A'}`,
      `${key.slice(0, 16)}${secret.slice(0, 32)}`,
      `${key.slice(0, 16)}${secret}${'A'.repeat(5)}`,
    ]) {
      expectProblem(await call({ 'x-api-key': forged }), 401, 'unauthenticated');
    }
  });

  it("another key's id with this key's secret", async () => {
    const a = await newKey();
    const b = await newKey();
    expectProblem(
      await call({ 'x-api-key': `gh_${b.record.id}_${a.key.slice(16)}` }),
      401,
      'unauthenticated',
    );
    expectProblem(
      await call({ 'x-api-key': `gh_${a.record.id}_${b.key.slice(16)}` }),
      401,
      'unauthenticated',
    );
  });

  it('revoked and expired keys', async () => {
    const revoked = await newKey();
    expect((await call({ 'x-api-key': revoked.key })).status).toBe(200);
    await repo.revoke(revoked.record.id);
    await new Promise((r) => setTimeout(r, 1000)); // SQLite: re-read within 1 s
    expectProblem(await call({ 'x-api-key': revoked.key }), 401, 'unauthenticated');
    const expired = await newKey({ expiresAt: new Date(Date.now() + 300) });
    expect((await call({ 'x-api-key': expired.key })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 400));
    expectProblem(await call({ 'x-api-key': expired.key }), 401, 'unauthenticated'); // even while cached
  });

  it('malformed keys', async () => {
    const { key } = await newKey();
    for (const bad of [
      '',
      'gh_',
      key.toUpperCase(),
      key.replace('gh_', ''),
      `${key},${key}`,
      `${key}%00`,
      key.replace(/_/g, '%5F'),
      `gh_${'A'.repeat(12)}_${'A'.repeat(5000)}`,
      `gh_../../etc/passwd_${'A'.repeat(43)}`,
      `gh_' OR '1'='1_${'A'.repeat(43)}`,
    ]) {
      const r = await call({ 'x-api-key': bad });
      expectProblem(r, 401, 'unauthenticated');
    }
    // the header twice: refused, not the first or last taken
    const twice = await request(`${gw.url}/keyed/x`, { headers: { 'x-api-key': [key, key] } });
    expect(twice.status).toBe(401);
  });

  it('keys in the query string or another header are ignored', async () => {
    const { key } = await newKey();
    for (const path of [`/keyed/x?api_key=${key}`, `/keyed/x?x-api-key=${key}`, `/keyed/x?apikey=${key}`]) {
      expectProblem(await call({}, path), 401, 'unauthenticated');
    }
    expectProblem(await call({ authorization: `Bearer ${key}` }), 401, 'unauthenticated');
    expectProblem(await call({ 'x-api-token': key }), 401, 'unauthenticated');
  });

  it('the key never appears in logs, error bodies or listings', async () => {
    const { key } = await newKey();
    const r = await call({ 'x-api-key': key.slice(0, -1) + '!' });
    expect(r.body.toString()).not.toContain(key.slice(0, 20));
    expect(JSON.stringify(r.headers)).not.toContain(key.slice(3, 15) + '_');
    const listing = JSON.stringify((await repo.list()).map(viewOf));
    await new Promise((res) => setTimeout(res, 100));
    expect(logs.length).toBeGreaterThan(0);
    for (const k of used) {
      const secret = k.slice(16);
      expect(logs).not.toContain(secret);
      expect(listing).not.toContain(secret);
      expect(logs).not.toContain(k);
    }
  });
});
