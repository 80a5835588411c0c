/**
 * The revocation listener (PostgreSQL LISTEN) dying silently, through real `gatehouse start`
 * processes: a TCP proxy in front of the shared PostgreSQL freezes only the connections that
 * LISTEN (bytes dropped, sockets open: a frozen backend or a NAT that forgot the flow). Without
 * its heartbeat answered, an instance trusts a cached key for 3 s at most, so a revocation whose
 * notice never arrives is refused within 3 s; the dead connection is replaced, and the next
 * revocation is refused within 1 s again.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey } from '../../src/auth/api-keys/manage.js';
import { PostgresKeyRepository } from '../../src/stores/postgres-keys.js';
import { PgProxy } from '../helpers/pg-proxy.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { createSchema, type PrivateSchema } from '../integration/api-keys-db.js';
import {
  firstRefusals,
  startInstances,
  statusWith,
  stopProcess,
  type Instance,
} from '../integration/api-keys-processes.js';

const SECRET = 'listener-secret-0123456789abcdef';

let upstream: Upstream;
let schema: PrivateSchema;
let repo: PostgresKeyRepository;
const proxy = new PgProxy();
let instances: Instance[] = [];

beforeAll(async () => {
  upstream = await startUpstream();
  schema = await createSchema();
  repo = new PostgresKeyRepository(schema.url); // straight to PostgreSQL, not through the proxy
  await repo.migrate();
  await proxy.start();
  const yaml = `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
workers: 1
database: { url: '${proxy.urlFor(schema.url)}' }
services: { api: { targets: ['${upstream.url}'] } }
routes: [ { name: keyed, match: { path: /keyed/** }, service: api, auth: [apiKey] } ]
auth: { apiKey: { secret: '${SECRET}' } }
logging: { level: info }
`;
  instances = await startInstances(yaml, [{}, {}]);
}, 60_000);

afterAll(async () => {
  await Promise.all(instances.map((i) => stopProcess(i.proc)));
  await proxy.close();
  await repo?.close();
  await schema?.drop();
  await upstream?.close();
});

async function until(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function cachedEverywhere(name: string) {
  const created = await createKey(repo, SECRET, { name, tier: 'free' });
  for (const i of instances) expect(await statusWith(i, created.key)).toBe(200);
  return created;
}

describe('a LISTEN connection that stops answering', () => {
  it('is noticed: revocations are refused within 3 s meanwhile, and within 1 s once replaced', async () => {
    await until(() => proxy.listeners === 2, 10_000); // each instance listens
    const first = await cachedEverywhere('frozen');
    expect(proxy.stallListeners()).toBe(2);
    const refusals = firstRefusals(instances, first.key, 10_000);
    const revoked = (await repo.revoke(first.record.id))!.revokedAt!.getTime(); // its notice is lost
    const delays = (await refusals).map((at) => at - revoked);
    console.log(`listener frozen: refused after ${delays.map((d) => `${Math.round(d)} ms`).join(', ')}`);
    for (const d of delays) expect(d).toBeLessThan(3_500);

    // the unanswered heartbeat replaced the connection: notices arrive again
    await until(() => proxy.listeners === 2, 10_000);
    for (const i of instances) await i.proc.waitFor(/revocation listener lost/);
    const second = await cachedEverywhere('after');
    const again = firstRefusals(instances, second.key, 10_000);
    const revokedAgain = (await repo.revoke(second.record.id))!.revokedAt!.getTime();
    const delaysAgain = (await again).map((at) => at - revokedAgain);
    console.log(
      `listener replaced: refused after ${delaysAgain.map((d) => `${Math.round(d)} ms`).join(', ')}`,
    );
    for (const d of delaysAgain) expect(d).toBeLessThan(1_000);
  });
});
