/**
 * Store failure: a private redis-server behind a gateway with `redis.timeout: 50ms`.
 * Killed mid-run, then started again on the same port: each `onStoreError` policy applies, no
 * request waits much past the timeout, the breaker logs once and counts what it decided, and
 * the gateway recovers by itself. Frozen (SIGSTOP: connections accepted, nothing answered):
 * the timeout bounds the wait and the breaker stops paying it on every request.
 */
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { FailurePolicy, GuardedStore } from '../../src/ratelimit/guarded-store.js';
import { Gateway } from '../../src/server/gateway.js';
import type { Runtime } from '../../src/server/runtime.js';
import { configFrom, TestGateway } from '../helpers/gateway.js';
import { startRedisServer, type RedisServer } from '../helpers/redis-server.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const LIMIT = 5;
const TIMEOUT_MS = 50;
/** generous: what "not delayed past the timeout" must mean on a loaded CI machine */
const LATENCY_BOUND_MS = 1000;
const RECOVERY_BOUND_MS = 10_000;

let redis: RedisServer | undefined;
let upstream: Upstream | undefined;
let gw: TestGateway | undefined;

afterEach(async () => {
  await gw?.close();
  await upstream?.close();
  await redis?.close();
  gw = undefined;
  upstream = undefined;
  redis = undefined;
});

type Log = { level: number; msg: string; [k: string]: unknown };

async function setup(policy: FailurePolicy, quota = false) {
  redis = await startRedisServer();
  upstream = await startUpstream();
  const logs: Log[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line) as Log) });
  const config = configFrom(`
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
redis: { url: "${redis.url}", timeout: ${TIMEOUT_MS}ms }
rateLimit:
  onStoreError: ${policy}
  keyPrefix: "t:"
  tiers:
    anonymous: { limits: [{ requests: ${LIMIT}, per: 1m }]${quota ? ', quota: { requests: 1000, per: month }' : ''} }
services:
  echo: { targets: ["${upstream.url}"] }
routes:
  - { name: limited, match: { path: /limited/** }, service: echo, rateLimit: ip }
`);
  gw = new TestGateway(await Gateway.start(config, { logger }));
  const guard = guardOf(gw.gateway);
  const url = gw.url;
  const adminUrl = gw.adminUrl;
  return { logs, guard, url, adminUrl, redis, transitions: () => transitions(logs) };
}

/** The rate limiter's breaker inside a running gateway (not part of its public surface). */
function guardOf(gateway: Gateway): GuardedStore {
  const store = (gateway as unknown as { state: { runtime: Runtime } }).state.runtime.rateLimiter?.store;
  if (store === undefined) throw new Error('no rate limiter');
  return store;
}

const transitions = (logs: Log[]) =>
  logs
    .filter((l) => l.msg.startsWith('rate-limit store'))
    .map((l) => `${l.level === 40 ? 'warn' : l.level === 30 ? 'info' : l.level}: ${l.msg}`);

type Sample = { status: number; ms: number; headers: Headers; body: string };

async function timed(url: string): Promise<Sample> {
  const start = performance.now();
  const res = await fetch(url);
  const body = await res.text();
  return { status: res.status, ms: performance.now() - start, headers: res.headers, body };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `n` requests one after another, `gapMs` apart, and a concurrent burst of `burst` first. */
async function traffic(url: string, n: number, gapMs: number, burst = 0): Promise<Sample[]> {
  const samples = await Promise.all(Array.from({ length: burst }, (_, i) => timed(`${url}/limited/b${i}`)));
  for (let i = 0; i < n; i++) {
    samples.push(await timed(`${url}/limited/s${i}`));
    await sleep(gapMs);
  }
  return samples;
}

async function waitUntil(cond: () => boolean | Promise<boolean>, timeoutMs: number): Promise<number> {
  const start = performance.now();
  while (!(await cond())) {
    if (performance.now() - start > timeoutMs) throw new Error(`condition not met in ${timeoutMs} ms`);
    await sleep(10);
  }
  return performance.now() - start;
}

async function readyz(adminUrl: string): Promise<{ status: number; checks: Record<string, boolean> }> {
  const res = await fetch(`${adminUrl}/readyz?verbose`);
  const body = (await res.json()) as { checks: Record<string, boolean> };
  return { status: res.status, checks: body.checks };
}

const maxMs = (samples: Sample[]) => Math.max(...samples.map((s) => s.ms));
const statuses = (samples: Sample[]) => samples.map((s) => s.status);
const figures: string[] = [];

describe.each(['local', 'closed', 'open'] as const)('Redis killed mid-run, onStoreError: %s', (policy) => {
  it('applies the policy at once, within the timeout, and recovers by itself after a restart', async () => {
    const { logs, guard, url, adminUrl, redis: node } = await setup(policy);

    // up: decided by this Redis
    const before = await traffic(url, 2, 0);
    expect(statuses(before)).toEqual([200, 200]);
    expect(before[0]!.headers.get('ratelimit-policy')).toBe(`"1m";q=${LIMIT};w=60`);
    expect(await node.client().keys('t:*')).not.toHaveLength(0);
    expect(await node.calls('evalsha')).toBeGreaterThan(0);

    await node.kill();
    const down = await traffic(url, 30, 15, 10);
    expect(down).toHaveLength(40);
    const downMax = maxMs(down);
    expect(downMax).toBeLessThan(LATENCY_BOUND_MS);
    expect(guard.isDegraded).toBe(true);
    expect(guard.degradedDecisions).toBe(40);
    // ... and in the metrics
    const metrics = await (await fetch(`${adminUrl}/metrics`)).text();
    expect(metrics).toContain(
      `gatehouse_ratelimit_degraded_decisions_total{store="redis",policy="${policy}"} 40`,
    );
    expect(metrics).toContain('gatehouse_ratelimit_store_degraded{store="redis"} 1');
    expect(metrics).toMatch(/gatehouse_store_errors_total\{store="redis"\} [1-9]/);

    if (policy === 'local') {
      // per-instance limits: exactly the limit, counted from when Redis went away
      expect(statuses(down).filter((s) => s === 200)).toHaveLength(LIMIT);
      expect(statuses(down).filter((s) => s === 429)).toHaveLength(40 - LIMIT);
      const refused = down.find((s) => s.status === 429)!;
      expect(Number(refused.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(refused.headers.get('x-ratelimit-remaining')).toBe('0');
    } else if (policy === 'closed') {
      expect(new Set(statuses(down))).toEqual(new Set([503]));
      for (const s of down) {
        expect(s.headers.get('content-type')).toBe('application/problem+json');
        expect((JSON.parse(s.body) as { code: string }).code).toBe('store_unavailable');
        expect(Number(s.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      }
    } else {
      expect(new Set(statuses(down))).toEqual(new Set([200]));
      for (const s of down) {
        expect(s.headers.get('ratelimit')).toBeNull();
        expect(s.headers.get('x-ratelimit-limit')).toBeNull();
      }
    }
    // ready unless the policy refuses traffic
    const degradedReady = await readyz(adminUrl);
    expect(degradedReady.checks.rateLimitStore).toBe(policy !== 'closed');
    expect(degradedReady.status).toBe(policy === 'closed' ? 503 : 200);
    expect(transitions(logs)).toEqual(['warn: rate-limit store unavailable: degraded mode']);

    // restart on the same port; no traffic: the breaker's own probe finds it
    await node.start();
    const recoveryMs = await waitUntil(() => !guard.isDegraded, RECOVERY_BOUND_MS);
    expect((await readyz(adminUrl)).status).toBe(200);
    const callsBefore = await node.calls('evalsha');
    const after = await timed(`${url}/limited/after`);
    // counted in the restarted Redis again (empty: no persistence), so admitted
    expect(after.status).toBe(200);
    expect(after.headers.get('ratelimit')).toMatch(new RegExp(`^"1m";r=${LIMIT - 1};t=\\d+$`));
    expect(await node.client().keys('t:*')).not.toHaveLength(0);
    expect((await node.calls('evalsha')) + (await node.calls('eval'))).toBeGreaterThan(callsBefore);
    expect(guard.degradedDecisions).toBe(40);
    expect(transitions(logs)).toEqual([
      'warn: rate-limit store unavailable: degraded mode',
      'info: rate-limit store recovered',
    ]);
    figures.push(
      `killed (${policy}): max latency while down ${downMax.toFixed(1)} ms over ${down.length} requests; recovered ${recoveryMs.toFixed(0)} ms after the restart`,
    );
  });
});

describe('Redis that accepts connections but never answers (SIGSTOP)', () => {
  it.each(['local', 'closed'] as const)(
    '%s: the timeout bounds each wait and the breaker stops paying it on every request',
    async (policy) => {
      // the counts checked at the end are the 1m window's: both requests must fall in one window
      await clearOfMinuteBoundary(20_000);
      const { logs, guard, url, adminUrl, redis: node } = await setup(policy, true);
      expect((await timed(`${url}/limited/up`)).status).toBe(200);

      node.freeze();
      // the first requests wait for the timeout (concurrently), then the breaker is open
      const stalled = await traffic(url, 80, 20, 10);
      const burst = stalled.slice(0, 10);
      const sequential = stalled.slice(10);
      const stallMax = maxMs(stalled);
      expect(stallMax).toBeLessThan(LATENCY_BOUND_MS);
      for (const s of burst) expect(s.ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 5); // they did wait
      const slow = sequential.filter((s) => s.ms >= TIMEOUT_MS - 5);
      // 80 requests over ≥ 1.6 s: probes at most every 250 ms (doubling), and from the
      // background: nearly every request is answered without waiting for Redis
      expect(slow.length).toBeLessThanOrEqual(8);
      expect(guard.isDegraded).toBe(true);
      expect(guard.degradedDecisions).toBeGreaterThanOrEqual(90);
      if (policy === 'local') {
        expect(statuses(stalled).filter((s) => s === 200)).toHaveLength(LIMIT);
        expect((await readyz(adminUrl)).status).toBe(200);
      } else {
        expect(new Set(statuses(stalled))).toEqual(new Set([503]));
        expect((await readyz(adminUrl)).status).toBe(503);
      }
      expect(transitions(logs)).toEqual(['warn: rate-limit store unavailable: degraded mode']);

      node.thaw();
      const recoveryMs = await waitUntil(() => !guard.isDegraded, RECOVERY_BOUND_MS);
      const keysBefore = await node.client().dbsize();
      const calls = await node.calls('evalsha');
      const after = await timed(`${url}/limited/after`);
      expect(await node.calls('evalsha')).toBeGreaterThan(calls);
      expect(await node.client().dbsize()).toBeGreaterThanOrEqual(Math.max(1, keysBefore));
      // Once thawed, Redis ran the commands the burst had given up on (they had been sent),
      // more than a second late: past their deadline, they counted nothing. Redis holds the
      // request before the freeze and this one, in the window and in the quota.
      expect(after.status).toBe(200);
      expect(after.headers.get('x-ratelimit-remaining')).toBe(String(LIMIT - 2));
      expect(await counts(node)).toEqual({ window: 2, quota: 2 });
      expect(transitions(logs)).toEqual([
        'warn: rate-limit store unavailable: degraded mode',
        'info: rate-limit store recovered',
      ]);
      figures.push(
        `frozen (${policy}): burst of 10 waited ${Math.min(...burst.map((s) => s.ms)).toFixed(1)}–${maxMs(burst).toFixed(1)} ms; ` +
          `then ${slow.length}/${sequential.length} sequential requests waited ≥ ${TIMEOUT_MS - 5} ms, ` +
          `median ${median(sequential).toFixed(1)} ms, max ${stallMax.toFixed(1)} ms; recovered ${recoveryMs.toFixed(0)} ms after SIGCONT`,
      );
    },
    60_000, // up to 20 s spent waiting out a minute boundary
  );
});

/**
 * Waits for the next minute when fewer than `ms` are left of this one (Redis's clock is this
 * machine's): a 1m window that turned between two requests would hold 1 and 1, not 2.
 */
async function clearOfMinuteBoundary(ms: number): Promise<void> {
  const left = 60_000 - (Date.now() % 60_000);
  if (left < ms) await new Promise((resolve) => setTimeout(resolve, left + 50));
}

/** what Redis holds for 127.0.0.1 on the anonymous tier: the 1m window's count and the quota's */
async function counts(node: RedisServer): Promise<{ window: number; quota: number }> {
  const c = node.client();
  const window = Number((await c.hget('t:{rl:anonymous:ip:127.0.0.1}:1m', 'c')) ?? 0);
  const quota = Number((await c.hget('t:{rl:anonymous:ip:127.0.0.1}:q:month', 'n')) ?? 0);
  return { window, quota };
}

describe('a reply that comes after the timeout', () => {
  it.each(['closed', 'local'] as const)(
    '%s: the request was decided by the policy, so what Redis counted for it is taken back',
    async (policy) => {
      const { guard, url, redis: node } = await setup(policy, true);
      expect((await timed(`${url}/limited/up`)).status).toBe(200);
      node.freeze();
      // given up on after 50 ms and decided by the policy; Redis runs them once thawed, well
      // within their deadline, and counts 4 of them (the limit is 5, 1 is used)
      const burst = await traffic(url, 0, 0, 10);
      if (policy === 'closed') expect(new Set(statuses(burst))).toEqual(new Set([503]));
      else expect(statuses(burst).filter((s) => s === 200)).toHaveLength(LIMIT); // local counters
      node.thaw();
      await waitUntil(() => guard.refunds === LIMIT - 1, RECOVERY_BOUND_MS);
      await waitUntil(async () => (await counts(node)).window === 1, RECOVERY_BOUND_MS);
      expect(await counts(node)).toEqual({ window: 1, quota: 1 });
      expect(guard.refundFailures).toBe(0);
      await waitUntil(() => !guard.isDegraded, RECOVERY_BOUND_MS);
      const after = await timed(`${url}/limited/after`);
      expect(after.status).toBe(200);
      expect(after.headers.get('x-ratelimit-remaining')).toBe(String(LIMIT - 2));
      figures.push(
        `late replies (${policy}): ${guard.refunds} admissions counted after the timeout, taken back`,
      );
    },
  );
});

function median(samples: Sample[]): number {
  const ms = samples.map((s) => s.ms).sort((a, b) => a - b);
  return ms[Math.floor(ms.length / 2)] ?? 0;
}

// the measured figures are printed once every test has run (a report, not a test)
afterAll(() => {
  for (const f of figures) console.log(f);
});
