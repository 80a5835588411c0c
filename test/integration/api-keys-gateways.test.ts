/**
 * Shared-state correctness of API keys through real `gatehouse start` processes on PostgreSQL
 * (a private schema), with clocks 30 s fast, right and 30 s slow (libfaketime): revocations by
 * the CLI or the admin API are refused by every instance within 1 s, and expiry happens at the
 * same instant everywhere, because every instant is the database's and every comparison is
 * made in the database's clock.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey } from '../../src/auth/api-keys/manage.js';
import { PostgresKeyRepository } from '../../src/stores/postgres-keys.js';
import { faketimeEnv } from '../helpers/faketime.js';
import { spawnCli, writeTempConfig } from '../helpers/process.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { createSchema, type PrivateSchema } from './api-keys-db.js';
import {
  firstRefusals,
  startInstances,
  statusWith,
  stopProcess,
  type Instance,
} from './api-keys-processes.js';

const SECRET = 'gateways-secret-0123456789abcdef';
const SKEWS = ['+30s', '+0s', '-30s'];

let upstream: Upstream;
let schema: PrivateSchema;
let repo: PostgresKeyRepository;
let instances: Instance[] = [];
let config = '';

const yaml = () => `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
workers: 1
database: { url: '${schema.url}' }
services: { api: { targets: ['${upstream.url}'] } }
routes: [ { name: keyed, match: { path: /keyed/** }, service: api, auth: [apiKey] } ]
auth: { apiKey: { secret: '${SECRET}' } }
logging: { level: info }
`;

beforeAll(async () => {
  upstream = await startUpstream();
  schema = await createSchema();
  repo = new PostgresKeyRepository(schema.url);
  await repo.migrate();
  config = writeTempConfig(yaml());
  instances = await startInstances(yaml(), SKEWS.map(faketimeEnv));
}, 60_000);

afterAll(async () => {
  await Promise.all(instances.map((i) => stopProcess(i.proc)));
  await repo?.close();
  await schema?.drop();
  await upstream?.close();
});

/** a new key, accepted (and so cached) by every instance */
async function cachedEverywhere(lifetimeMs?: number) {
  const created = await createKey(repo, SECRET, {
    name: 'skew',
    tier: 'free',
    ...(lifetimeMs === undefined ? {} : { lifetimeMs }),
  });
  for (const i of instances) expect(await statusWith(i, created.key)).toBe(200);
  return created;
}

const report = (what: string, delays: number[]) =>
  console.log(`${what}: ${delays.map((d, n) => `${SKEWS[n]} ${Math.round(d)} ms`).join(', ')}`);

describe('API keys on three instances whose clocks are 30 s fast, right, 30 s slow', () => {
  it('a key revoked by a CLI 30 s fast is refused everywhere within 1 s', async () => {
    const { key, record } = await cachedEverywhere();
    const refusals = firstRefusals(instances, key, 20_000);
    const cli = spawnCli(['keys', 'revoke', record.id, '-c', config], faketimeEnv('+30s'));
    expect(await cli.exited).toBe(0);
    const revokedAt = (await repo.get(record.id))!.revokedAt!.getTime();
    const delays = (await refusals).map((at) => at - revokedAt);
    report('CLI (+30 s) revoke, refused after', delays);
    for (const d of delays) expect(d).toBeLessThan(1000);
  });

  it('a key revoked on the admin port of the fast instance is refused everywhere within 1 s', async () => {
    const { key, record } = await cachedEverywhere();
    const refusals = firstRefusals(instances, key, 20_000);
    const res = await fetch(`${instances[0]!.adminUrl}/keys/${record.id}`, { method: 'DELETE' });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { revokedAt: string };
    const revokedAt = Date.parse(body.revokedAt);
    // the database's instant, not the fast instance's (30 s ahead: "grace until ..." elsewhere)
    expect(Math.abs(revokedAt - Date.now())).toBeLessThan(5_000);
    const delays = (await refusals).map((at) => at - revokedAt);
    report('admin (+30 s) revoke, refused after', delays);
    for (const d of delays) expect(d).toBeLessThan(1000);
    const seen = await fetch(`${instances[2]!.adminUrl}/keys/${record.id}`);
    expect(((await seen.json()) as { revokedAt: string }).revokedAt).toBe(body.revokedAt);
  });

  it('a key expires at the same instant on every instance', async () => {
    const { key, record } = await cachedEverywhere(4_000);
    const expiresAt = Date.parse(record.expiresAt!);
    const delays = (await firstRefusals(instances, key, 20_000)).map((at) => at - expiresAt);
    report('expiry, refused after', delays);
    for (const d of delays) {
      expect(d).toBeGreaterThan(-100); // not early: the fast instance must not expire it 30 s early
      expect(d).toBeLessThan(1000);
    }
  });
});
