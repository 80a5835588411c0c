/**
 * From counts to what the client sees: decisions (decision.ts), the RateLimit / X-RateLimit
 * headers (headers.ts) and the 429 / 503 problems of the rate-limit stage, exactly as docs/rate-limiting.md shows them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { GatewayConfig, RouteConfig } from '../../src/config/schema.js';
import type { RequestContext } from '../../src/stages/stage.js';
import { problemBody } from '../../src/problems/body.js';
import type { Problem } from '../../src/problems/registry.js';
import { describe as describeDecision, type Decision, type Plan } from '../../src/ratelimit/decision.js';
import type { GuardedDecision, GuardedStore } from '../../src/ratelimit/guarded-store.js';
import { appendRateLimitHeaders, type HeaderMode } from '../../src/ratelimit/headers.js';
import type { RateLimiter } from '../../src/ratelimit/limiter.js';
import { MemoryStore } from '../../src/ratelimit/memory-store.js';
import { RATE_LIMITER, rateLimit } from '../../src/stages/rate-limit/index.js';
import { METRICS } from '../../src/stages/metrics.js';
import type { StageInstance } from '../../src/stages/stage.js';
import { testContext, testDeps } from '../helpers/stage-context.js';

const at = (iso: string) => Date.parse(iso);
const minute = (requests: number) => ({ requests, windowMs: 60_000, name: '1m' });
const second = (requests: number) => ({ requests, windowMs: 1000, name: '1s' });

const stores: MemoryStore[] = [];
function store(clock: { t: number }): MemoryStore {
  const s = new MemoryStore(() => clock.t);
  stores.push(s);
  return s;
}
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

const headers = (d: Decision, mode: HeaderMode = 'both') => {
  const out: string[] = [];
  appendRateLimitHeaders(out, d, mode);
  const map: Record<string, string> = {};
  for (let i = 0; i < out.length; i += 2) map[out[i] as string] = out[i + 1] as string;
  return { list: out, map };
};

describe('the documented examples', () => {
  it('RateLimit-Policy: "1m";q=60;w=60 and RateLimit: "1m";r=42;t=17', () => {
    // 18 of 60 used 47 s into the minute, nothing before: 42 left; the 43rd is free once the
    // 18 have faded enough in the next minute, e ≥ 3.334 s into it (18·(60 − e)/60 ≤ 17):
    // 13 s + 3.334 s from now, 17 s rounded up
    const plan: Plan = { tier: 'free', limits: [minute(60)], quota: null };
    const start = at('2027-05-05T10:00:00Z');
    const d = describeDecision(
      plan,
      'allowed',
      [{ index: start / 60_000, current: 18, previous: 0 }],
      null,
      start + 47_000,
    );
    expect(headers(d).list).toEqual([
      'ratelimit-policy',
      '"1m";q=60;w=60',
      'ratelimit',
      '"1m";r=42;t=17',
      'x-ratelimit-limit',
      '60',
      'x-ratelimit-remaining',
      '42',
      'x-ratelimit-reset',
      '17',
    ]);
  });
});

describe('decisions through the memory store', () => {
  const pro: Plan = {
    tier: 'pro',
    limits: [second(50), minute(2000)],
    quota: { requests: 1_000_000, per: 'month' },
  };

  it('one RateLimit-Policy entry per limit and the quota; RateLimit for the tightest', () => {
    const clock = { t: at('2027-01-10T08:00:00.250Z') };
    const d = store(clock).consumeSync('k', pro);
    expect(d.outcome).toBe('allowed');
    expect(d.retryAfterSec).toBe(0);
    const h = headers(d).map;
    expect(h['ratelimit-policy']).toBe('"1s";q=50;w=1, "1m";q=2000;w=60, "month";q=1000000;w=2678400');
    // 49 left of 50/s; the 50th returns once this request has faded out of the estimate: at
    // the end of the next second, 1.75 s from now
    expect(h['ratelimit']).toBe('"1s";r=49;t=2');
    expect(h['x-ratelimit-limit']).toBe('50');
    expect(h['x-ratelimit-remaining']).toBe('49');
    expect(h['x-ratelimit-reset']).toBe('2');
  });

  it('the tightest is the one with the fewest left: the minute once it is nearly used', () => {
    const clock = { t: at('2027-01-10T08:00:00.000Z') };
    const s = store(clock);
    const plan: Plan = { tier: 't', limits: [second(5), minute(12)], quota: null };
    for (let i = 0; i < 10; i++) {
      clock.t += 1000; // one per second: the 1s limit stays nearly empty
      s.consumeSync('k', plan);
    }
    const d = s.consumeSync('k', plan);
    // 1s: this second's 2 and last second's 1 (at full weight at the second's start)
    expect(d.policies.map((p) => [p.name, p.remaining])).toEqual([
      ['1s', 2],
      ['1m', 1],
    ]);
    expect(headers(d).map['ratelimit']).toMatch(/^"1m";r=1;t=\d+$/);
    expect(headers(d).map['x-ratelimit-limit']).toBe('12');
  });

  it('a tie on remaining goes to the longer wait', () => {
    const clock = { t: at('2027-01-10T08:00:00.000Z') };
    const plan: Plan = { tier: 't', limits: [second(1), minute(1)], quota: null };
    const d = store(clock).consumeSync('k', plan);
    expect(d.policies.map((p) => [p.name, p.remaining, p.resetSec])).toEqual([
      ['1s', 0, 2],
      ['1m', 0, 120],
    ]);
    expect(headers(d).map['ratelimit']).toBe('"1m";r=0;t=120');
  });

  it('exactly L admitted into an empty window, then 429 with Retry-After from the window', () => {
    const clock = { t: at('2027-01-10T08:00:30.000Z') };
    const s = store(clock);
    const plan: Plan = { tier: 'anonymous', limits: [minute(20)], quota: null };
    for (let i = 0; i < 20; i++) expect(s.consumeSync('k', plan).outcome).toBe('allowed');
    const refused = s.consumeSync('k', plan);
    expect(refused.outcome).toBe('rate_limited');
    // 20 in this minute: the next minute admits once 20·(60 − e)/60 ≤ 19, e ≥ 3 s: 33 s from now
    expect(refused.retryAfterSec).toBe(33);
    expect(headers(refused).map['ratelimit']).toBe('"1m";r=0;t=33');
    expect(headers(refused).map['x-ratelimit-reset']).toBe('33');
    clock.t += 32_999;
    expect(s.consumeSync('k', plan).outcome).toBe('rate_limited');
    clock.t += 1;
    expect(s.consumeSync('k', plan).outcome).toBe('allowed');
  });

  it('Retry-After is whole seconds rounded up, at least 1', () => {
    const clock = { t: at('2027-01-10T08:00:00.000Z') };
    const s = store(clock);
    const plan: Plan = { tier: 't', limits: [{ requests: 2, windowMs: 1000, name: '1s' }], quota: null };
    s.consumeSync('k', plan);
    clock.t += 999;
    s.consumeSync('k', plan);
    const d = s.consumeSync('k', plan);
    // next second: 2·(1000 − e)/1000 + 1 ≤ 2 ⇔ e ≥ 500: 501 ms from now
    expect(d.outcome).toBe('rate_limited');
    expect(d.retryAfterSec).toBe(1);
  });

  it('a refused request counts nothing', () => {
    const clock = { t: at('2027-01-10T08:00:00.000Z') };
    const s = store(clock);
    const plan: Plan = { tier: 't', limits: [minute(3)], quota: { requests: 100, per: 'day' } };
    for (let i = 0; i < 3; i++) s.consumeSync('k', plan);
    for (let i = 0; i < 50; i++) expect(s.consumeSync('k', plan).outcome).toBe('rate_limited');
    const d = s.consumeSync('k', plan);
    expect(d.policies.find((p) => p.kind === 'quota')?.remaining).toBe(97);
  });

  it('quota: quota_exceeded until the month ends, Jan 31 → Feb 1', () => {
    const clock = { t: at('2027-01-31T23:59:58.500Z') };
    const s = store(clock);
    const plan: Plan = { tier: 'free', limits: [minute(60)], quota: { requests: 2, per: 'month' } };
    expect(s.consumeSync('k', plan).outcome).toBe('allowed');
    const second = s.consumeSync('k', plan);
    expect(second.outcome).toBe('allowed');
    expect(second.policies[1]).toEqual({
      name: 'month',
      kind: 'quota',
      quota: 2,
      windowSec: 31 * 86_400,
      remaining: 0,
      resetSec: 2,
    });
    // the quota is the tightest: nothing left, the longest wait
    expect(headers(second).map['ratelimit']).toBe('"month";r=0;t=2');
    clock.t = at('2027-01-31T23:59:59.999Z');
    const refused = s.consumeSync('k', plan);
    expect(refused.outcome).toBe('quota_exceeded');
    expect(refused.retryAfterSec).toBe(1);
    clock.t = at('2027-02-01T00:00:00.000Z');
    const feb = s.consumeSync('k', plan);
    expect(feb.outcome).toBe('allowed');
    expect(feb.policies[1]).toMatchObject({ remaining: 1, windowSec: 28 * 86_400 });
  });

  it('quota: February 2028 has 29 days; December → January changes the year', () => {
    const clock = { t: at('2028-02-29T23:00:00Z') };
    const s = store(clock);
    const plan: Plan = { tier: 'free', limits: [], quota: { requests: 1, per: 'month' } };
    const feb = s.consumeSync('k', plan);
    expect(feb.policies).toEqual([
      { name: 'month', kind: 'quota', quota: 1, windowSec: 29 * 86_400, remaining: 0, resetSec: 3600 },
    ]);
    const refused = s.consumeSync('k', plan);
    expect(refused.outcome).toBe('quota_exceeded');
    expect(refused.retryAfterSec).toBe(3600);
    clock.t = at('2028-03-01T00:00:00Z');
    expect(s.consumeSync('k', plan).outcome).toBe('allowed');

    clock.t = at('2028-12-31T23:59:59.000Z');
    expect(s.consumeSync('k', plan).outcome).toBe('allowed');
    expect(s.consumeSync('k', plan)).toMatchObject({ outcome: 'quota_exceeded', retryAfterSec: 1 });
    clock.t = at('2029-01-01T00:00:00Z');
    expect(s.consumeSync('k', plan).outcome).toBe('allowed');
  });

  it('quota per day: 00:00 UTC, whatever the local time zone', () => {
    const clock = { t: at('2027-06-30T23:59:59.999Z') };
    const s = store(clock);
    const plan: Plan = { tier: 'free', limits: [], quota: { requests: 1, per: 'day' } };
    expect(s.consumeSync('k', plan).policies[0]).toMatchObject({ windowSec: 86_400, resetSec: 1 });
    expect(s.consumeSync('k', plan).outcome).toBe('quota_exceeded');
    clock.t += 1;
    expect(s.consumeSync('k', plan).outcome).toBe('allowed');
  });

  it('Retry-After waits for the quota and every refusing limit, whichever is last', () => {
    // a 1-day limit outlasts a daily quota that renews in 1 s
    const clock = { t: at('2027-06-30T23:59:59.000Z') };
    const s = store(clock);
    const plan: Plan = {
      tier: 't',
      limits: [{ requests: 1, windowMs: 86_400_000, name: '1d' }],
      quota: { requests: 1, per: 'day' },
    };
    s.consumeSync('k', plan);
    const d = s.consumeSync('k', plan);
    expect(d.outcome).toBe('quota_exceeded');
    // the 1d window (aligned on UTC days) holds 1 of 1: open again after two days' turn
    expect(d.retryAfterSec).toBe(86_400 + 1);
    clock.t += 1000;
    expect(s.consumeSync('k', plan).outcome).toBe('rate_limited');
    clock.t += 86_400_000 - 1;
    expect(s.consumeSync('k', plan).outcome).toBe('rate_limited');
    clock.t += 1;
    expect(s.consumeSync('k', plan).outcome).toBe('allowed');
  });
});

describe('rateLimit.headers', () => {
  const clock = { t: at('2027-01-10T08:00:00.000Z') };
  const plan: Plan = {
    tier: 't',
    limits: [minute(60), { requests: 1000, windowMs: 3_600_000, name: '1h' }],
    quota: null,
  };

  it.each<[HeaderMode, string[]]>([
    [
      'both',
      ['ratelimit-policy', 'ratelimit', 'x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset'],
    ],
    ['draft', ['ratelimit-policy', 'ratelimit']],
    ['legacy', ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset']],
    ['none', []],
  ])('%s', (mode, names) => {
    const d = store(clock).consumeSync('k', plan);
    const h = headers(d, mode);
    expect(h.list.filter((_, i) => i % 2 === 0)).toEqual(names);
    if (mode === 'both' || mode === 'draft') {
      expect(h.map['ratelimit-policy']).toBe('"1m";q=60;w=60, "1h";q=1000;w=3600');
      // the 60th is back once this request has faded out: at the end of the next minute
      expect(h.map['ratelimit']).toBe('"1m";r=59;t=120');
    }
    if (mode === 'both' || mode === 'legacy') {
      expect([
        h.map['x-ratelimit-limit'],
        h.map['x-ratelimit-remaining'],
        h.map['x-ratelimit-reset'],
      ]).toEqual(['60', '59', '120']);
    }
  });
});

describe('the rate-limit stage: 429 and 503 problems', () => {
  const route = (rateLimit: 'ip' | 'tier' | 'off') => ({ name: 'r', rateLimit }) as unknown as RouteConfig;
  const config = {} as GatewayConfig;

  function limiter(decide: (key: string, plan: Plan) => GuardedDecision, headerMode: HeaderMode = 'both') {
    const plans = new Map<string, Plan>([
      ['anonymous', { tier: 'anonymous', limits: [minute(2)], quota: null }],
      ['free', { tier: 'free', limits: [minute(100)], quota: { requests: 1, per: 'month' } }],
    ]);
    const keys: string[] = [];
    const rl: RateLimiter = {
      store: {
        consume: (key: string, plan: Plan) => {
          keys.push(key);
          return decide(key, plan);
        },
      } as unknown as GuardedStore,
      plans,
      headers: headerMode,
      anonymousTier: 'anonymous',
      defaultTier: 'free',
      keyFor: (tier, subject) => `gh:{rl:${tier}:${subject}}`,
      ipSubject: (ip) => `ip:${ip}`,
      unauthenticated: null,
    };
    return { rl, keys };
  }

  const ctx = (consumer: RequestContext['consumer'] = null) =>
    testContext({ url: '/x', clientIp: '203.0.113.7', consumer });

  const build = (rl: RateLimiter | null, mode: 'ip' | 'tier' | 'off') =>
    rateLimit.build(route(mode), config, testDeps([RATE_LIMITER, rl], [METRICS, null]));

  /** the stage that ran last: its response headers are read through it */
  let current: StageInstance | null = null;
  async function run(rl: RateLimiter, c: RequestContext, mode: 'ip' | 'tier' = 'ip') {
    current = build(rl, mode);
    if (current?.onRequest === undefined) throw new Error('no stage');
    return (await current.onRequest(c)) as Problem | undefined;
  }

  /** the headers the stage adds to an upstream response with none */
  const added = (c: RequestContext): string[] => {
    const headers: string[] = [];
    current?.onResponseHeaders?.(c, headers, 200);
    return headers;
  };

  const headerMap = (list: readonly string[] | undefined) => {
    const map: Record<string, string> = {};
    for (let i = 0; i < (list?.length ?? 0); i += 2) map[list?.[i] as string] = list?.[i + 1] as string;
    return map;
  };

  it('is not compiled for `rateLimit: off` or without a limiter', () => {
    const { rl } = limiter(() => 'open');
    expect(build(rl, 'off')).toBeNull();
    expect(build(null, 'ip')).toBeNull();
  });

  it('allowed: continues, with the headers on the response', async () => {
    const clock = { t: at('2027-01-10T08:00:00.000Z') };
    const s = store(clock);
    const { rl, keys } = limiter((k, p) => s.consumeSync(k, p));
    const c = ctx();
    expect(await run(rl, c)).toBeUndefined();
    expect(keys).toEqual(['gh:{rl:anonymous:ip:203.0.113.7}']);
    expect(headerMap(added(c))).toEqual({
      'ratelimit-policy': '"1m";q=2;w=60',
      ratelimit: '"1m";r=1;t=120',
      'x-ratelimit-limit': '2',
      'x-ratelimit-remaining': '1',
      'x-ratelimit-reset': '120',
    });
  });

  it('rate_limited: 429 problem+json with Retry-After and the headers', async () => {
    const clock = { t: at('2027-01-10T08:00:00.000Z') };
    const s = store(clock);
    const { rl } = limiter((k, p) => s.consumeSync(k, p));
    await run(rl, ctx());
    await run(rl, ctx());
    const p = await run(rl, ctx());
    expect(p).toBeDefined();
    expect(p?.status).toBe(429);
    expect(p?.code).toBe('rate_limited');
    // two in this minute: the next admits once 2·(60 − e)/60 ≤ 1, e ≥ 30 s: 90 s from now
    expect(p?.headers?.slice(0, 2)).toEqual(['retry-after', '90']);
    expect(headerMap(p?.headers)).toMatchObject({ ratelimit: '"1m";r=0;t=90', 'x-ratelimit-remaining': '0' });
    expect(JSON.parse(problemBody(p as Problem, 'req-1'))).toEqual({
      type: 'https://gatehouse.dev/problems/rate_limited',
      title: 'Too Many Requests',
      status: 429,
      detail: 'too many requests; retry in 90 s',
      instance: 'tag:gatehouse.dev,2026:request:req-1',
      code: 'rate_limited',
    });
  });

  it('quota_exceeded: 429 naming the quota, Retry-After until the period ends', async () => {
    const clock = { t: at('2027-01-31T23:00:00.000Z') };
    const s = store(clock);
    const { rl, keys } = limiter((k, p) => s.consumeSync(k, p));
    const consumer = { id: 'c42', tier: 'free', roles: [] };
    expect(await run(rl, ctx(consumer), 'tier')).toBeUndefined();
    const p = await run(rl, ctx(consumer), 'tier');
    expect(keys).toEqual(['gh:{rl:free:c:c42}', 'gh:{rl:free:c:c42}']);
    expect(p?.status).toBe(429);
    expect(p?.code).toBe('quota_exceeded');
    expect(p?.headers?.slice(0, 2)).toEqual(['retry-after', '3600']);
    expect(p?.detail).toBe('the month quota of this tier is used up; it renews in 3600 s');
    expect(headerMap(p?.headers)['ratelimit']).toBe('"month";r=0;t=3600');
  });

  it('Retry-After even with `rateLimit.headers: none`, and nothing else', async () => {
    const clock = { t: at('2027-01-10T08:00:00.000Z') };
    const s = store(clock);
    const { rl } = limiter((k, p) => s.consumeSync(k, p), 'none');
    const c = ctx();
    await run(rl, c);
    expect(added(c)).toEqual([]);
    await run(rl, ctx());
    const p = await run(rl, ctx());
    expect(p?.headers).toEqual(['retry-after', '90']);
  });

  it('a consumer without a (known) tier gets the default tier; anonymous callers go by IP', async () => {
    const clock = { t: at('2027-01-10T08:00:00.000Z') };
    const s = store(clock);
    const { rl, keys } = limiter((k, p) => s.consumeSync(k, p));
    await run(rl, ctx({ id: 'a', tier: '', roles: [] }), 'tier');
    await run(rl, ctx({ id: 'b', tier: 'gold', roles: [] }), 'tier');
    await run(rl, ctx(null), 'tier');
    await run(rl, ctx({ id: 'c', tier: 'free', roles: [] }), 'ip');
    expect(keys).toEqual([
      'gh:{rl:free:c:a}',
      'gh:{rl:free:c:b}',
      'gh:{rl:anonymous:ip:203.0.113.7}',
      'gh:{rl:anonymous:ip:203.0.113.7}',
    ]);
  });

  it('store down: `closed` answers 503 store_unavailable with Retry-After; `open` lets it through', async () => {
    const closed = limiter(() => 'closed').rl;
    const p = await run(closed, ctx());
    expect(p).toMatchObject({ status: 503, code: 'store_unavailable', headers: ['retry-after', '1'] });
    const open = limiter(() => 'open').rl;
    const c = ctx();
    expect(await run(open, c)).toBeUndefined();
    expect(added(c)).toEqual([]);
  });

  it('waits for an asynchronous store', async () => {
    const clock = { t: at('2027-01-10T08:00:00.000Z') };
    const s = store(clock);
    const { rl } = limiter((k, p) => s.consume(k, p) as unknown as GuardedDecision);
    const result = build(rl, 'ip')?.onRequest?.(ctx());
    expect(result).toBeInstanceOf(Promise);
    expect(await result).toBeUndefined();
  });
});
