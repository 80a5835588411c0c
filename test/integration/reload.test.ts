/**
 * What a reload keeps and what it rebuilds, through the real gateway started from a file and
 * reloaded with `POST /reload`: rate-limit counters and the breaker and health state of services
 * whose settings did not change survive any number of reloads; a reload that fails (an invalid
 * file, or a new config that cannot be put to work) answers a problem, is logged and counted, and
 * leaves no connection behind: Redis clients (a private redis-server) and PostgreSQL sessions
 * (by `application_name`) are counted before, during and after, and after shutdown.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { constants, mkdtempSync, writeFileSync } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Gateway } from '../../src/server/gateway.js';
import { configFrom, TestGateway } from '../helpers/gateway.js';
import { expectProblem, request } from '../helpers/http-client.js';
import { AUDIENCE, ISSUER, makeKey, sign, type TestKey } from '../helpers/jwks.js';
import { metricValue, scrape, serviceView, sleep, waitFor } from '../helpers/observe.js';
import { writeTempConfig } from '../helpers/process.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { closedPort, startUpstream, type Upstream } from '../helpers/upstream.js';
import { createSchema, DATABASE_URL, type PrivateSchema } from './api-keys-db.js';

type Log = { level: number; msg: string; [k: string]: unknown };

/** An upstream that answers its own name. */
const named = (name: string) =>
  startUpstream((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain' }).end(name);
  });

let gw: TestGateway | undefined;
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  await gw?.close(100);
  gw = undefined;
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Starts a gateway from `yaml` written to a file, so that `POST /reload` re-reads it. */
async function startFromFile(yaml: string): Promise<{ file: string; logs: Log[] }> {
  const file = writeTempConfig(yaml);
  const logs: Log[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line) as Log) });
  gw = new TestGateway(await Gateway.start(configFrom(yaml), { configFile: file, logger }));
  return { file, logs };
}

const reload = () => request(`${gw!.adminUrl}/reload`, { method: 'POST' });
const reloads = async (result: 'success' | 'failure') =>
  metricValue(await scrape(gw!), 'gatehouse_config_reloads_total', { result });

describe('a reload keeps the state of what did not change', () => {
  let a: Upstream, b: Upstream;
  beforeAll(async () => {
    [a, b] = await Promise.all([named('a'), named('b')]);
  });
  afterAll(async () => {
    await Promise.all([a.close(), b.close()]);
  });

  it('keeps the memory store: a 30/min limit admits exactly 30 across 9 reloads', async () => {
    const yaml = (service: string) => `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
rateLimit:
  tiers:
    anonymous: { limits: [{ requests: 30, per: 1m }] }
services:
  a: { targets: ["${a.url}"] }
  b: { targets: ["${b.url}"] }
routes:
  - { name: limited, match: { path: /limited/** }, service: ${service}, rateLimit: ip }
  - { name: who, match: { path: /who/** }, service: ${service} }
`;
    // The whole run takes a second or two; started late in a minute it could straddle the
    // window's end, where the sliding window lets a few more in by design. Start afresh instead.
    const left = 60_000 - (Date.now() % 60_000);
    if (left < 15_000) await sleep(left + 50);

    const { file } = await startFromFile(yaml('a'));
    let admitted = 0;
    let refused = 0;
    for (let round = 0; round < 10; round++) {
      if (round > 0) {
        // only the route's service changes: nothing about rate limiting
        const service = round % 2 === 0 ? 'a' : 'b';
        writeFileSync(file, yaml(service));
        expect((await reload()).status).toBe(200);
        expect((await request(`${gw!.url}/who/x`)).body.toString()).toBe(service);
      }
      for (let i = 0; i < 12; i++) {
        const r = await request(`${gw!.url}/limited/x`);
        if (r.status === 200) admitted++;
        else if (r.status === 429) refused++;
      }
    }
    expect(await reloads('success')).toBe(9);
    expect({ admitted, refused }).toEqual({ admitted: 30, refused: 90 });
  });

  it("a reload that changes only route A's service keeps B's open breaker and C's ejected target", async () => {
    const refused = `http://127.0.0.1:${await closedPort()}`;
    const c = await named('c');
    cleanups.push(() => c.close());
    const yaml = (aTarget: string, bOpenFor = '1m') => `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
services:
  a: { targets: ["${aTarget}"] }
  b:
    targets: ["${refused}"]
    retry: { attempts: 1 }
    passiveHealth: { consecutiveErrors: 0 }
    circuitBreaker: { errorRate: 0.5, window: 10s, minRequests: 3, openFor: ${bOpenFor} }
  c:
    targets: ["${c.url}", "${refused}"]
    retry: { attempts: 1 }
    circuitBreaker: { enabled: false }
    passiveHealth: { consecutiveErrors: 1, ejectFor: 1m }
routes:
  - { name: a, match: { path: /a/** }, service: a }
  - { name: b, match: { path: /b/** }, service: b }
  - { name: c, match: { path: /c/** }, service: c }
`;
    const { file } = await startFromFile(yaml(a.url));
    for (let i = 0; i < 3; i++) expectProblem(await request(`${gw!.url}/b/x`), 502, 'upstream_error');
    expectProblem(await request(`${gw!.url}/b/x`), 503, 'circuit_open');
    // round robin: one of the first two requests meets the refusing target, which is ejected
    const first = await Promise.all([1, 2].map(() => request(`${gw!.url}/c/x`)));
    expect(first.map((r) => r.status).sort()).toEqual([200, 502]);
    const ejected = async () => (await serviceView(gw!, 'c')).targets.filter((t) => t.ejected);
    expect((await ejected()).map((t) => t.target)).toEqual([refused]);

    writeFileSync(file, yaml(b.url));
    expect((await reload()).status).toBe(200);
    // A was rebuilt with its new target...
    expect((await request(`${gw!.url}/a/x`)).body.toString()).toBe('b');
    // ...B and C kept their state: the breaker is still open, the target still ejected
    expect((await serviceView(gw!, 'b')).breaker.state).toBe('open');
    expectProblem(await request(`${gw!.url}/b/x`), 503, 'circuit_open');
    expect((await ejected()).map((t) => t.target)).toEqual([refused]);
    for (let i = 0; i < 4; i++) expect((await request(`${gw!.url}/c/x`)).status).toBe(200);

    // a changed service starts afresh
    writeFileSync(file, yaml(b.url, '2m'));
    expect((await reload()).status).toBe(200);
    expect((await serviceView(gw!, 'b')).breaker.state).toBe('closed');
    expect((await ejected()).map((t) => t.target)).toEqual([refused]);
  });
});

describe('a failed reload leaks nothing', () => {
  let redis: RedisServer;
  let schema: PrivateSchema;
  let upstream: Upstream;
  let key: TestKey;
  let db: pg.Client;
  let dir: string;
  beforeAll(async () => {
    [redis, schema, upstream, key] = await Promise.all([
      startRedisServer(),
      createSchema(),
      startUpstream(),
      makeKey('k1'),
    ]);
    db = new pg.Client({ connectionString: DATABASE_URL });
    await db.connect();
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-reload-'));
  });
  afterAll(async () => {
    await db.end();
    await Promise.all([redis.close(), schema.drop(), upstream.close()]);
  });

  /** this test's own sessions: every URL it gives the gateway names it `<app>...` */
  const app = `gh_reload_${randomUUID().slice(0, 8)}`;
  const sessions = async () =>
    (
      await db.query<{ pid: number }>(
        'SELECT pid FROM pg_stat_activity WHERE application_name LIKE $1 ORDER BY pid',
        [`${app}%`],
      )
    ).rows.map((r) => r.pid);
  /** the private redis-server's clients, but the one asking */
  let probe: ReturnType<RedisServer['client']> | undefined;
  const redisClients = async () => {
    const r = (probe ??= redis.client());
    const me = String(await r.client('ID'));
    const list = String(await r.call('CLIENT', 'LIST', 'TYPE', 'normal'));
    return list
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith(`id=${me} `))
      .map((l) => /^id=(\d+)/.exec(l)?.[1])
      .sort();
  };
  const connections = async () => ({ redis: await redisClients(), postgres: await sessions() });
  /** the servers see a closed connection a moment after the client closed it: poll, then compare */
  async function expectConnections(expected: Awaited<ReturnType<typeof connections>>): Promise<void> {
    const deadline = Date.now() + 2000;
    let now = await connections();
    while (JSON.stringify(now) !== JSON.stringify(expected) && Date.now() < deadline) {
      await sleep(50);
      now = await connections();
    }
    expect(now).toEqual(expected);
  }

  const yaml = (o: { pem: string; redisTimeout?: string; appSuffix?: string; extra?: string }) => `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
redis: { url: "${redis.url}", timeout: ${o.redisTimeout ?? '500ms'} }
database: { url: "${schema.url}&application_name=${app}${o.appSuffix ?? '_a'}" }
auth:
  jwt: { issuer: "${ISSUER}", audience: ${AUDIENCE}, publicKeys: ["${o.pem}"] }
  apiKey: { secret: reload-test-secret-0123456789 }
rateLimit:
  keyPrefix: "${app}:"
  tiers:
    anonymous: { limits: [{ requests: 1000, per: 1m }] }
services:
  s: { targets: ["${upstream.url}"] }
routes:
  - { name: limited, match: { path: /limited/** }, service: s, rateLimit: ip }
  - { name: jwt, match: { path: /jwt/** }, service: s, auth: [jwt], rateLimit: "off" }
  - { name: key, match: { path: /key/** }, service: s, auth: [apiKey], rateLimit: "off" }
${o.extra ?? ''}
`;

  /**
   * Writes `text` into a FIFO for the next reader, so the test decides what each read of the file
   * returns: the loader's check, then the key source's own read when the new runtime gets ready.
   * That is the race of a file replaced between the two, made deterministic.
   */
  async function feed(fifo: string, text: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`nobody read ${fifo}`)), 5000);
    });
    try {
      await Promise.race([writeFile(fifo, text), late]);
    } finally {
      clearTimeout(timer);
    }
  }
  /** Releases a writer still waiting for a reader (a failed run must not hang the file). */
  async function unblock(fifo: string): Promise<void> {
    const h = await open(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    await sleep(50);
    await h.close();
  }

  it('answers reload_failed or invalid_config, logs, counts, closes what it built; nothing left after shutdown', async () => {
    const pem = join(dir, 'key.pem');
    writeFileSync(pem, key.publicPem);
    const { file, logs } = await startFromFile(yaml({ pem }));
    const token = await sign(key);
    const works = async () => {
      expect((await request(`${gw!.url}/limited/x`)).status).toBe(200);
      const r = await request(`${gw!.url}/jwt/x`, { headers: { authorization: `Bearer ${token}` } });
      expect(r.status).toBe(200);
    };
    await works();
    // the running gateway's connections: one to Redis, the key store's pool and its LISTEN
    await waitFor(async () => (await sessions()).length === 2, 'the key store pool and LISTEN');
    const before = await connections();
    expect(before.redis).toHaveLength(1);

    // successful reloads that change neither Redis nor the database keep the same connections
    for (let i = 0; i < 3; i++) {
      writeFileSync(
        file,
        yaml({ pem, extra: `  - { name: extra, match: { path: /extra${i} }, service: s }` }),
      );
      expect((await reload()).status).toBe(200);
    }
    await expectConnections(before);

    // a key file not deployed yet: the loader names field and file; nothing is built
    const missing = join(dir, 'not-deployed.pem');
    for (let i = 0; i < 5; i++) {
      writeFileSync(file, yaml({ pem: missing, redisTimeout: '1s', appSuffix: '_b' }));
      const r = await reload();
      expectProblem(r, 400, 'invalid_config');
      const body = JSON.parse(r.body.toString()) as { errors: string[] };
      expect(body.errors).toEqual([
        expect.stringMatching(
          new RegExp(`gatehouse\\.yaml:\\d+:\\d+: auth\\.jwt\\.publicKeys\\[0\\]: cannot read "${missing}"`),
        ),
      ]);
    }
    await expectConnections(before);

    // a key file that passes the loader's check but is unusable when the new runtime gets
    // ready: by then the new runtime has connected to Redis and PostgreSQL (new settings)
    const fifo = join(dir, 'key.fifo');
    execFileSync('mkfifo', [fifo]);
    cleanups.push(() => unblock(fifo));
    for (let i = 0; i < 3; i++) {
      writeFileSync(file, yaml({ pem: fifo, redisTimeout: '1s', appSuffix: '_b' }));
      const answer = reload();
      await feed(fifo, key.publicPem); // the loader's check
      await waitFor(async () => {
        const now = await connections();
        return now.redis.length === 2 && now.postgres.length >= 3;
      }, 'the new runtime to connect');
      await feed(fifo, 'not a key'); // the key source's read
      const r = await answer;
      expectProblem(r, 500, 'reload_failed');
      const detail = (JSON.parse(r.body.toString()) as { detail: string }).detail;
      expect(detail).toContain(fifo);
      expect(detail).toContain('the running config is kept');
      await expectConnections(before);
    }
    await works();

    expect(await reloads('failure')).toBe(8);
    expect(await reloads('success')).toBe(3);
    expect(logs.filter((l) => l.msg === 'config reload rejected; keeping the running config')).toHaveLength(
      5,
    );
    const failed = logs.filter((l) => l.msg === 'config reload failed; keeping the running config');
    expect(failed).toHaveLength(3);
    expect(failed[0]).toMatchObject({ level: 50, trigger: 'admin' });
    expect(String(failed[0]?.reason)).toContain(fifo);

    await gw!.close();
    gw = undefined;
    await expectConnections({ redis: [], postgres: [] });
  });

  it('a start that fails to get ready closes what it opened', async () => {
    // configFrom loads text only (no key file is read): the start itself meets the missing file
    const missing = join(dir, 'never-deployed.pem');
    const started = Gateway.start(configFrom(yaml({ pem: missing })));
    await expect(started).rejects.toThrow(missing);
    await expectConnections({ redis: [], postgres: [] });
  });
});
