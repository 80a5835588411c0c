/**
 * JWT revocation through real `gatehouse start` processes sharing one Redis prefix, whose wall
 * clocks disagree by a minute (libfaketime: one 30 s fast, one 30 s slow). The instant of a
 * subject's revocation is Redis's (TIME in the write script), not the clock of the instance that
 * took the admin call: a token issued in the second after it is accepted on every instance, one
 * issued before is refused. Then a gateway process started after the revocations refuses the
 * revoked tokens from its first request (the denylist is read before it says it is ready).
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { faketimeEnv } from '../helpers/faketime.js';
import { JwksServer, makeKey, sign, type TestKey } from '../helpers/jwks.js';
import { spawnCli, stopProcess, writeTempConfig, type CliProcess } from '../helpers/process.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const ADMIN_TOKEN = 'revocation-process-test-admin-token';
const prefix = `test-revocation-proc-${randomUUID().slice(0, 8)}:`;

type Instance = { proc: CliProcess; url: string; adminUrl: string };

let upstream: Upstream;
let key: TestKey;
let jwks: JwksServer;
let redis: Redis;
let instances: Instance[] = [];

beforeAll(async () => {
  upstream = await startUpstream();
  key = await makeKey('rev-proc');
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
  await Promise.all(instances.map((i) => stopProcess(i.proc)));
  instances = [];
});

const yaml = () => `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0, token: ${ADMIN_TOKEN} }
redis: { url: "${REDIS_URL}" }
logging: { level: info }
auth:
  jwt:
    issuer: "https://auth.example.test/"
    audience: orders-api
    jwksUrl: "${jwks.url}"
    clockTolerance: 60s
    revocation: { keyPrefix: "${prefix}" }
services:
  echo: { targets: ["${upstream.url}"] }
routes:
  - { name: api, match: { path: /api/** }, service: echo, auth: [jwt], rateLimit: "off" }
`;

async function startInstances(envs: NodeJS.ProcessEnv[]): Promise<Instance[]> {
  const started = envs.map((env) => spawnCli(['start', '-c', writeTempConfig(yaml())], env));
  const ready = await Promise.all(
    started.map(async (proc) => {
      const [, port, adminPort] = await proc.waitFor(
        /"port":(\d+),"adminPort":(\d+)[^\n]*gatehouse ready/,
        15_000,
      );
      return { proc, url: `http://127.0.0.1:${port}`, adminUrl: `http://127.0.0.1:${adminPort}` };
    }),
  ).catch(async (err: unknown) => {
    await Promise.all(started.map(stopProcess));
    throw err;
  });
  instances.push(...ready);
  return ready;
}

const status = async (i: Instance, token: string) => {
  const res = await fetch(`${i.url}/api/x`, { headers: { authorization: `Bearer ${token}` } });
  const body = await res.text();
  return res.status === 401 ? (JSON.parse(body) as { code: string }).code : res.status;
};

/** the wall clock of a child (its admin port's Date header) minus ours, in seconds */
async function clockOffsetSec(i: Instance): Promise<number> {
  const before = Date.now();
  const res = await fetch(`${i.adminUrl}/livez`);
  await res.arrayBuffer();
  return (Date.parse(res.headers.get('date') ?? '') - (before + Date.now()) / 2) / 1000;
}

async function until(timeoutMs: number, probe: () => Promise<boolean>): Promise<void> {
  const t0 = Date.now();
  while (!(await probe())) {
    if (Date.now() - t0 > timeoutMs) throw new Error(`not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('gateway processes with skewed clocks sharing one denylist', () => {
  it("take a subject's revocation instant from Redis, and a new process refuses from its first request", async () => {
    const [fast, slow] = (await startInstances([faketimeEnv('+30s'), faketimeEnv('-30s')])) as [
      Instance,
      Instance,
    ];
    expect(await clockOffsetSec(fast)).toBeGreaterThan(28);
    expect(await clockOffsetSec(slow)).toBeLessThan(-28);

    const sub = `user-${randomUUID()}`;
    const before = await sign(key, { sub, iat: Math.floor(Date.now() / 1000) - 5 });
    for (const i of [fast, slow]) expect(await status(i, before)).toBe(200);

    // revoked through the instance whose clock is 30 s fast
    const res = await fetch(`${fast.adminUrl}/consumers/${sub}/revoke-tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
    });
    expect(res.status).toBe(200);
    const revokedAt = Date.parse(((await res.json()) as { revokedAt: string }).revokedAt);
    // Redis's clock (this machine's), not the fast instance's
    expect(Math.abs(revokedAt - Date.now())).toBeLessThan(5000);

    for (const i of [fast, slow])
      await until(1000, async () => (await status(i, before)) === 'token_revoked');
    // issued in the second after the revocation: on the fast instance's clock that is 29 s in
    // the past, so a revocation stamped by that clock would refuse it
    const after = await sign(key, { sub, iat: Math.floor(revokedAt / 1000) + 1 });
    for (const i of [fast, slow]) expect(await status(i, after)).toBe(200);

    const jti = `jti-${randomUUID()}`;
    const byJti = await sign(key, { sub: 'another', jti });
    const revokeJti = await fetch(`${slow.adminUrl}/tokens/revoke`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ jti }),
    });
    expect(revokeJti.status).toBe(200);

    // a restart: a new process answers its very first request with the denylist in place
    await stopProcess(slow.proc);
    const [fresh] = (await startInstances([{}])) as [Instance];
    expect(await status(fresh, byJti)).toBe('token_revoked');
    expect(await status(fresh, before)).toBe('token_revoked');
    expect(await status(fresh, after)).toBe(200);
  }, 60_000);
});
