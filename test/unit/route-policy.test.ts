/**
 * A route's own rate-limit key, limits and mode, and its own upstream limits (body size,
 * response timeout, retry), without a socket: the stages on request contexts over the in-memory
 * store, the keys, and the config checks with their file:line messages.
 */
import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.js';
import { formatProblem } from '../../src/config/problems.js';
import type { AccessRecord } from '../../src/observability/access-log/index.js';
import { silentLogger } from '../../src/observability/logger.js';
import { routeLimitSpec } from '../../src/ratelimit/config.js';
import { createLimitStore, createRateLimiter, effectiveRateLimit } from '../../src/ratelimit/limiter.js';
import { bodyLimit } from '../../src/stages/body-limit/index.js';
import { METRICS } from '../../src/stages/metrics.js';
import { DECISION, RATE_LIMITER, rateLimit, TIER } from '../../src/stages/rate-limit/index.js';
import { routeScope, scopedSubject } from '../../src/stages/rate-limit/scoped.js';
import type { Problem } from '../../src/problems/registry.js';
import type { RetryPolicy } from '../../src/upstream/retry-policy.js';
import { routeUpstreamPolicy } from '../../src/upstream/route-policy.js';
import { Service } from '../../src/upstream/service.js';
import { configFrom } from '../helpers/gateway.js';
import { testContext, testDeps } from '../helpers/stage-context.js';

const config = configFrom(`
rateLimit:
  tiers:
    anonymous: { limits: [{ requests: 10, per: 1m }] }
services: { s: { targets: ["http://127.0.0.1:9"] } }
routes:
  - { name: "trial:1", match: { path: /t }, service: s, rateLimit: { limits: [{ requests: 2, per: 1m }], mode: shadow } }
  - { name: own, match: { path: /o }, service: s, rateLimit: { key: "header:X-Tenant", limits: [{ requests: 2, per: 1m }] } }
  - { name: short, match: { path: /s }, service: s, rateLimit: { key: ip } }
  - { name: big, match: { path: /b }, service: s, limits: { bodySize: 1kb }, timeouts: { response: 2s }, retry: { attempts: 1, on: [503] } }
`);

function stageFor(route: number) {
  const limiter = createRateLimiter(config, createLimitStore(config, silentLogger()));
  const stage = rateLimit.build(
    config.routes[route]!,
    config,
    testDeps([RATE_LIMITER, limiter], [METRICS, null]),
  );
  if (stage?.onRequest === undefined) throw new Error('no stage');
  return { stage, limiter };
}

describe("a route's own rate limiting", () => {
  it('normalises what equals a short form to it', () => {
    expect(routeLimitSpec({ key: 'consumer' })).toBe('tier');
    expect(routeLimitSpec({ key: 'ip' })).toBe('ip');
    expect(routeLimitSpec({})).toBe('tier');
    expect(effectiveRateLimit(config.routes[2]!, config)).toBe('ip');
    expect(routeLimitSpec({ key: 'header:X-Tenant' })).toEqual({
      key: { header: 'x-tenant' },
      limits: null,
      shadow: false,
    });
  });

  it('shadow: never refuses, adds no header, records would_reject for the access log', async () => {
    const { stage } = stageFor(0);
    const outcomes: Array<string | undefined> = [];
    for (let i = 0; i < 4; i++) {
      const ctx = testContext({ clientIp: '192.0.2.1' });
      expect(await stage.onRequest!(ctx)).toBeUndefined();
      const headers: string[] = [];
      stage.onResponseHeaders?.(ctx, headers, 200);
      expect(headers).toEqual([]);
      outcomes.push(ctx.get(DECISION));
      expect(ctx.get(TIER)).toBe('route:trial:1');
      if (i === 3) {
        const record = { tier: null, rateLimit: null } as unknown as AccessRecord;
        stage.onLog?.(ctx, record);
        expect(record).toMatchObject({ tier: 'route:trial:1', rateLimit: 'would_reject' });
      }
    }
    expect(outcomes).toEqual(['allowed', 'allowed', 'would_reject', 'would_reject']);
  });

  it('enforced own limits refuse with the route limit, per header value', async () => {
    const { stage } = stageFor(1);
    const run = async (headers: Record<string, string>) =>
      ((await stage.onRequest!(testContext({ headers, clientIp: '192.0.2.1' }))) as Problem | undefined)
        ?.status ?? 200;
    expect([
      await run({ 'x-tenant': 'a' }),
      await run({ 'x-tenant': 'a' }),
      await run({ 'x-tenant': 'a' }),
    ]).toEqual([200, 200, 429]);
    expect(await run({ 'x-tenant': 'b' })).toBe(200);
    expect([await run({}), await run({}), await run({})]).toEqual([200, 200, 429]);
  });

  it('keys: a scope per route (a route name ":" escaped), subjects apart by kind', () => {
    expect(routeScope('a:b', null)).toBe('~route.a%3ab');
    expect(routeScope('a', 'free')).toBe('free~route.a');
    expect(routeScope('a:b', null)).not.toBe(routeScope('a', null));
    const { limiter } = stageFor(1);
    const key = { header: 'x-tenant' } as const;
    expect(scopedSubject(testContext({ headers: { 'x-tenant': 'ip:192.0.2.1' } }), key, limiter)).toBe(
      'h:ip:192.0.2.1',
    );
    expect(scopedSubject(testContext({ clientIp: '192.0.2.1' }), key, limiter)).toBe('ip:192.0.2.1');
    expect(
      scopedSubject(testContext({ clientIp: '192.0.2.1', headers: { 'x-tenant': '' } }), key, limiter),
    ).toBe('ip:192.0.2.1');
    const consumer = { id: 'u1', tier: '', permissions: [], method: 'jwt' } as never;
    expect(scopedSubject(testContext({ consumer }), 'route+consumer', limiter)).toBe('c:u1');
    expect(scopedSubject(testContext({ consumer, clientIp: '192.0.2.1' }), 'ip', limiter)).toBe(
      'ip:192.0.2.1',
    );
  });
});

describe("a route's own upstream limits", () => {
  it('body-limit: the route limit, else the gateway limit', () => {
    const own = bodyLimit.build(config.routes[3]!, config, testDeps())!;
    const gateway = bodyLimit.build(config.routes[0]!, config, testDeps())!;
    expect((own.onRequest!(testContext({ bodyLength: 1025 })) as Problem | undefined)?.status).toBe(413);
    expect(own.onRequest!(testContext({ bodyLength: 1024 }))).toBeUndefined();
    expect(gateway.onRequest!(testContext({ bodyLength: 1025 }))).toBeUndefined();
  });

  it('resolves once: body limit, response timeout, a retry policy per service sharing its budget', () => {
    const noTargets = {
      origins: [],
      start: () => undefined,
      ready: async () => undefined,
      close: () => undefined,
    };
    const service = new Service('s', config.services.s!, { source: noTargets });
    const services = new Map([['s', service]]);
    const own = routeUpstreamPolicy(config.routes[3]!, config.limits.bodySize, services);
    expect(own.bodyLimit).toBe(1024);
    expect(own.responseTimeout).toBe(2000);
    const retry = own.retryPolicies?.get(service) as RetryPolicy;
    expect(retry.attempts).toBe(1);
    expect(retry.retriesStatus(503)).toBe(true);
    expect(retry.retriesStatus(502)).toBe(false);
    expect(retry.config.backoff).toBe(service.retry.config.backoff);
    // one budget: a retry taken through the route is gone for the service too
    const before = service.retry.budgetLeft();
    expect(before).toBe(true);
    for (let i = 0; i < 20; i++) retry.recordRetry();
    expect(service.retry.budgetLeft()).toBe(false);
    const none = routeUpstreamPolicy(config.routes[0]!, config.limits.bodySize, services);
    expect(none).toEqual({ bodyLimit: config.limits.bodySize, responseTimeout: 0, retryPolicies: null });
  });
});

describe('config checks', () => {
  const problems = (route: string, tiers = '') => {
    const r = loadConfigText(
      `${tiers}services: { a: { targets: ["http://127.0.0.1:9"], retry: { maxBackoff: 100ms } } }\nroutes:\n  - ${route}\n`,
      'g.yaml',
      { env: {} },
    );
    return r.ok ? [] : r.problems.map(formatProblem);
  };

  it('takes own limits without any tier', () => {
    expect(
      problems(
        '{ name: r, match: { path: /x }, service: a, rateLimit: { key: ip, limits: [{ requests: 1, per: 1s }] } }',
      ),
    ).toEqual([]);
  });

  it('names what is wrong, with its line', () => {
    expect(
      problems(
        '{ name: r, match: { path: /x }, service: a, rateLimit: { mode: shadow } }',
        'rateLimit: { tiers: { anonymous: { limits: [{ requests: 1, per: 1s }] }, free: { limits: [{ requests: 1, per: 1s }] } } }\n',
      ),
    ).toEqual([
      "g.yaml:4:62: routes[0].rateLimit.mode: shadow needs the route's own `limits` to try out (a shadow tier limit would leave the route unlimited)",
    ]);
    expect(
      problems(
        '{ name: r, match: { path: /x }, service: a, rateLimit: { key: "header:", limits: [{ requests: 1, per: 1s }] } }',
      ),
    ).toEqual([
      'g.yaml:3:62: routes[0].rateLimit.key: names no header: write "header:" and a header name, such as "header:x-tenant"',
    ]);
    expect(
      problems(
        '{ name: r, match: { path: /x }, service: a, rateLimit: { key: "header:a b", limits: [{ requests: 1, per: 1s }] } }',
      ),
    ).toEqual(['g.yaml:3:62: routes[0].rateLimit.key: "a b" is not a header name']);
    expect(problems('{ name: r, match: { path: /x }, service: a, rateLimit: { key: "tenant" } }')).toEqual([
      'g.yaml:3:49: routes[0].rateLimit: must be "tier", "ip", "off", or { key, limits, mode } with key "consumer", "ip", "route+consumer" or "header:NAME" and mode "enforce" or "shadow"',
    ]);
    expect(
      problems(
        '{ name: r, match: { path: /x }, service: a, rateLimit: { limits: [{ requests: 1, per: 1m }, { requests: 2, per: 60s }] } }',
      ),
    ).toEqual([
      'g.yaml:3:112: routes[0].rateLimit.limits[1].per: repeats the window of limits[0]: use one limit per window',
    ]);
    expect(problems('{ name: r, match: { path: /x }, service: a, retry: { backoff: 1s } }')).toEqual([
      'g.yaml:3:58: routes[0].retry.backoff: backoff (1000 ms) must not be longer than maxBackoff (100 ms) over service "a"',
    ]);
    expect(problems('{ name: r, match: { path: /x }, service: a, timeouts: { response: 0 } }')).toHaveLength(
      1,
    );
  });
});
