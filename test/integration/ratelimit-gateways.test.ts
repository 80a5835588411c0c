/**
 * Proofs through real processes: three `gatehouse start` processes sharing one Redis
 * enforce one limit — exactly N admitted out of a burst spread over them — also when their
 * clocks disagree by a minute (libfaketime +30 s and −30 s), because the script takes its time
 * from Redis. The control: without Redis each process grants N on its own.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { faketimeEnv } from '../helpers/faketime.js';
import { spawnCli, stopProcess, writeTempConfig, type CliProcess } from '../helpers/process.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const LIMIT = 20;
const REQUESTS = 90;

type Instance = { proc: CliProcess; url: string; adminUrl: string };

let upstream: Upstream;
let redis: Redis;
let instances: Instance[] = [];
let prefix = '';

beforeAll(async () => {
  upstream = await startUpstream();
  redis = new Redis(REDIS_URL);
});
afterAll(async () => {
  await upstream.close();
  redis.disconnect();
});
afterEach(async () => {
  await Promise.all(instances.map((i) => stopProcess(i.proc)));
  instances = [];
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
});

// `redis.timeout` is left at its 50 ms default: a cold burst keeps each process's event loop busy
// for longer than that, and a reply that waited for the loop must not count as a Redis timeout
// (the `local` policy would then admit from per-instance counters). No instance may log
// degraded mode here.
const yaml = (redisUrl: string | null) => `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
workers: 1
${redisUrl === null ? '' : `redis: { url: "${redisUrl}" }`}
logging: { level: info }
rateLimit:
  keyPrefix: "${prefix}"
  tiers:
    anonymous: { limits: [{ requests: ${LIMIT}, per: 1m }] }
services:
  echo: { targets: ["${upstream.url}"] }
routes:
  - { name: limited, match: { path: /limited/** }, service: echo, rateLimit: ip }
`;

/** Starts one `gatehouse start` process per env (each its own config file and ports). */
async function startInstances(
  envs: NodeJS.ProcessEnv[],
  redisUrl: string | null,
  startTimeoutMs = 10_000,
): Promise<Instance[]> {
  const started = envs.map((env) =>
    spawnCli(['start', '-c', writeTempConfig(yaml(redisUrl))], { LOG_LEVEL: 'info', ...env }),
  );
  // if one fails to start, the others are stopped here (afterEach knows only started sets)
  instances = await Promise.all(
    started.map(async (proc) => {
      const [, port, adminPort] = await proc.waitFor(
        /"port":(\d+),"adminPort":(\d+)[^\n]*gatehouse ready/,
        startTimeoutMs,
      );
      return { proc, url: `http://127.0.0.1:${port}`, adminUrl: `http://127.0.0.1:${adminPort}` };
    }),
  ).catch(async (err: unknown) => {
    await Promise.all(started.map(stopProcess));
    throw err;
  });
  return instances;
}

/** `total` concurrent requests, request i to instance i mod n; the statuses per instance. */
async function burst(targets: Instance[], total = REQUESTS): Promise<number[][]> {
  const perInstance: number[][] = targets.map(() => []);
  await Promise.all(
    Array.from({ length: total }, async (_, i) => {
      const n = i % targets.length;
      const res = await fetch(`${targets[n]!.url}/limited/r${i}`);
      await res.arrayBuffer();
      perInstance[n]!.push(res.status);
    }),
  );
  return perInstance;
}

const count = (statuses: number[], status: number) => statuses.filter((s) => s === status).length;

/** script runs on the shared Redis: EVALSHA, plus EVAL when a process first meets NOSCRIPT */
async function scriptCalls(): Promise<number> {
  const info = await redis.info('commandstats');
  const calls = (cmd: string) => Number(new RegExp(`^cmdstat_${cmd}:calls=(\\d+)`, 'm').exec(info)?.[1] ?? 0);
  return calls('evalsha') + calls('eval');
}

/** The wall clock of a child, from the Date header of its admin port, minus ours (seconds). */
async function clockOffsetSec(instance: Instance): Promise<number> {
  const before = Date.now();
  const res = await fetch(`${instance.adminUrl}/livez`);
  await res.arrayBuffer();
  const after = Date.now();
  const theirs = Date.parse(res.headers.get('date') ?? '');
  return (theirs - (before + after) / 2) / 1000;
}

async function expectExactlyLimitViaRedis(targets: Instance[], total = REQUESTS): Promise<void> {
  const callsBefore = await scriptCalls();
  const statuses = await burst(targets, total);
  const all = statuses.flat();
  expect(all).toHaveLength(total);
  expect(count(all, 200)).toBe(LIMIT);
  expect(count(all, 429)).toBe(total - LIMIT);
  for (const s of statuses) expect(s).toHaveLength(total / targets.length);
  // counted in Redis, not by a per-instance fallback
  const keys = await redis.keys(`${prefix}*`);
  expect(keys.length).toBeGreaterThan(0);
  for (const key of keys) expect(key).toContain('{rl:anonymous:ip:127.0.0.1}');
  // every instance's decisions went to Redis, batched (one script call per batch, not per
  // request), and what Redis counted is exactly what was admitted
  expect(await scriptCalls()).toBeGreaterThanOrEqual(callsBefore + targets.length);
  for (const key of keys) expect(await redis.hget(key, 'c')).toBe(String(LIMIT));
  for (const i of targets) {
    expect(i.proc.output()).not.toContain('degraded mode');
    const ready = await fetch(`${i.adminUrl}/readyz?verbose`);
    expect(ready.status).toBe(200);
  }
}

describe('three gateway processes sharing Redis', () => {
  it(`admit exactly ${LIMIT} of ${REQUESTS} concurrent requests spread over them`, async () => {
    prefix = `test:${randomUUID()}:`;
    const targets = await startInstances([{}, {}, {}], REDIS_URL);
    await expectExactlyLimitViaRedis(targets);
  });

  it('still exactly the limit with one clock 30 s fast and one 30 s slow (libfaketime)', async () => {
    prefix = `test:${randomUUID()}:`;
    const targets = await startInstances([{}, faketimeEnv('+30s'), faketimeEnv('-30s')], REDIS_URL);
    // the children's clocks really are shifted (and their timers still work: they started)
    const offsets = await Promise.all(targets.map(clockOffsetSec));
    expect(Math.abs(offsets[0]!)).toBeLessThan(2);
    expect(offsets[1]!).toBeGreaterThan(28);
    expect(offsets[1]!).toBeLessThan(32);
    expect(offsets[2]!).toBeGreaterThan(-32);
    expect(offsets[2]!).toBeLessThan(-28);
    // so do their log timestamps
    const logTime = (i: Instance) =>
      Date.parse(/"time":"([^"]+)"[^\n]*gatehouse ready/.exec(i.proc.output())?.[1] ?? '');
    expect(logTime(targets[1]!) - logTime(targets[2]!)).toBeGreaterThan(50_000);
    await expectExactlyLimitViaRedis(targets);
  });

  // Many processes starting at once on a loaded host: each one's first burst meets cold
  // connections, the script's first EVAL and a Redis that competes for the CPU. A reply that
  // takes longer than 50 ms then must not become a local decision (the slow first burst once
  // admitted 103 against 100): the first calls get a longer budget, and the timeout counts from
  // when the command was written.
  it('ten processes started at once: every first burst decided by Redis, exactly the limit', async () => {
    prefix = `test:${randomUUID()}:`;
    const targets = await startInstances(
      Array.from({ length: 10 }, () => ({})),
      REDIS_URL,
      45_000,
    );
    await expectExactlyLimitViaRedis(targets, 200);
  }, 90_000);

  it('control: without Redis each process grants the limit on its own', async () => {
    prefix = `test:${randomUUID()}:`;
    const targets = await startInstances([{}, {}, {}], null);
    const statuses = await burst(targets);
    for (const s of statuses) {
      expect(count(s, 200)).toBe(LIMIT);
      expect(count(s, 429)).toBe(REQUESTS / 3 - LIMIT);
    }
  });
});
