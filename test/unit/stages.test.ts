/**
 * The stage contract, unit by unit: the chain runner, each stage on a test context (no server,
 * no sockets), and the server's answer when a stage throws.
 */
import { describe, expect, it } from 'vitest';
import type { Authenticators } from '../../src/auth/index.js';
import type { AuthAttempt, Authenticator, AuthMethod } from '../../src/auth/types.js';
import type { GatewayConfig, RouteConfig } from '../../src/config/schema.js';
import { GatewayMetrics } from '../../src/observability/metrics.js';
import { PortEvents } from '../../src/observability/port-events.js';
import { RequestObserver, accessRecord } from '../../src/observability/request-observer.js';
import { silentLogger } from '../../src/observability/logger.js';
import { runChain, type ChainEnd } from '../../src/pipeline/chain.js';
import type { Problem } from '../../src/problems/registry.js';
import { RequestFlow } from '../../src/server/request-flow.js';
import { GatewayResponse } from '../../src/server/response.js';
import { compileRuntime } from '../../src/server/runtime.js';
import { AUTHENTICATORS, authenticate } from '../../src/stages/authenticate/index.js';
import { authorize } from '../../src/stages/authorize/index.js';
import { bodyLimit } from '../../src/stages/body-limit/index.js';
import { METRICS } from '../../src/stages/metrics.js';
import type { RateLimiter } from '../../src/ratelimit/limiter.js';
import { DECISION, RATE_LIMITER, rateLimit, TIER } from '../../src/stages/rate-limit/index.js';
import { Reply, RequestContext, type RequestStage, type StageInstance } from '../../src/stages/stage.js';
import { configFrom } from '../helpers/gateway.js';
import { testContext, testDeps, testRoute } from '../helpers/stage-context.js';

const base = configFrom(`
services: { svc: { targets: ["http://127.0.0.1:9"] } }
routes: [ { name: r, match: { path: /** }, service: svc } ]
limits: { bodySize: 100 }
rbac: { roles: { reader: ["orders:read"], admin: ["*"] } }
`);
const baseRoute = base.routes[0] as RouteConfig;
const routeWith = (fields: Partial<RouteConfig>): RouteConfig => ({ ...baseRoute, ...fields });
const withAuth = (auth: object): GatewayConfig => ({ ...base, auth }) as unknown as GatewayConfig;

const forbidden = (detail: string): Problem => ({
  status: 403,
  code: 'forbidden',
  title: 'Forbidden',
  detail,
});

/** What a chain ended with. */
function recordingEnd() {
  const seen: string[] = [];
  const end: ChainEnd<RequestContext> & { seen: string[]; done: Promise<void> } = {
    seen,
    done: Promise.resolve(),
    proceed: () => void seen.push('proceed'),
    reject: (_ctx, p) => void seen.push(`reject ${p.code}`),
    respond: (_ctx, r) => void seen.push(`respond ${r.status}`),
    failed: (_ctx, err) => void seen.push(`failed ${(err as Error).message}`),
  };
  return end;
}

const stage = (onRequest: RequestStage['onRequest']): RequestStage => ({ onRequest });
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('the chain runner', () => {
  it('runs the stages in order, synchronously until one returns a promise, then proceeds', async () => {
    const order: number[] = [];
    const end = recordingEnd();
    const stages = [
      stage(() => void order.push(1)),
      stage(() => {
        order.push(2);
        return Promise.resolve(undefined);
      }),
      stage(() => void order.push(3)),
    ];
    runChain(testContext(), stages, 0, end);
    expect(order).toEqual([1, 2]); // the third waits for the promise
    await settle();
    expect(order).toEqual([1, 2, 3]);
    expect(end.seen).toEqual(['proceed']);
  });

  it('a Problem ends the chain: later stages do not run', async () => {
    const end = recordingEnd();
    let later = false;
    const p = forbidden('no');
    runChain(testContext(), [stage(() => Promise.resolve(p)), stage(() => void (later = true))], 0, end);
    await settle();
    expect(end.seen).toEqual(['reject forbidden']);
    expect(later).toBe(false);
  });

  it('a Reply ends the chain as an answer, not an error: sync or async', async () => {
    const end = recordingEnd();
    let later = false;
    const reply = new Reply(204, ['access-control-allow-origin', 'https://a.example']);
    runChain(testContext(), [stage(() => reply), stage(() => void (later = true))], 0, end);
    runChain(testContext(), [stage(() => Promise.resolve(reply))], 0, end);
    await settle();
    expect(end.seen).toEqual(['respond 204', 'respond 204']);
    expect(later).toBe(false);
  });

  it('a stage that throws, or rejects, fails the request; so does a throwing end', async () => {
    const boom = (what: string) => () => {
      throw new Error(what);
    };
    const thrown = recordingEnd();
    runChain(testContext(), [stage(boom('sync'))], 0, thrown);
    expect(thrown.seen).toEqual(['failed sync']);
    const rejected = recordingEnd();
    runChain(testContext(), [stage(() => Promise.reject(new Error('async')))], 0, rejected);
    await settle();
    expect(rejected.seen).toEqual(['failed async']);
    const end = recordingEnd();
    end.proceed = boom('proceed');
    runChain(testContext(), [], 0, end);
    expect(end.seen).toEqual(['failed proceed']);
  });

  it('a stage that throws: the server answers 500 internal_error, closes, counts and logs it', async () => {
    const metrics = new GatewayMetrics();
    const flow = new RequestFlow({
      runtime: compileRuntime(base),
      observer: new RequestObserver(null, null, null),
      events: new PortEvents(metrics, silentLogger()),
      draining: false,
      upgraded: new Set(),
    });
    const plain = testContext();
    const res = new GatewayResponse(plain.req);
    res.requestId = 'req-9';
    const ctx = new RequestContext(plain.req, res, testRoute());
    runChain(
      ctx,
      [
        stage(() => {
          throw new Error('a bug');
        }),
      ],
      0,
      flow,
    );
    expect(res.statusCode).toBe(500);
    expect(res.problemCode).toBe('internal_error');
    expect(headerOf(res, 'connection')).toBe('close');
    const counted = (await metrics.handlerFailures.get()).values.find((v) => v.labels.port === 'proxy');
    expect(counted?.value).toBe(1);
  });
});

/** A header written with writeHead's list form (not kept by getHeader). */
function headerOf(res: GatewayResponse, name: string): string | undefined {
  const head = (res as unknown as { _header: string | null })._header ?? '';
  const line = head.split('\r\n').find((l) => l.toLowerCase().startsWith(`${name}:`));
  return line?.slice(name.length + 1).trim();
}

describe('body-limit', () => {
  const instance = bodyLimit.build(baseRoute, base, testDeps()) as RequestStage;

  it('refuses a declared length over limits.bodySize with 413 body_too_large', () => {
    expect(instance.onRequest(testContext({ bodyLength: 101 }))).toMatchObject({
      status: 413,
      code: 'body_too_large',
      detail: 'request body exceeds 100 bytes',
    });
  });

  it('lets the limit itself, no body and a chunked body (counted as it streams) through', () => {
    for (const bodyLength of [100, 0, -1])
      expect(instance.onRequest(testContext({ bodyLength }))).toBeUndefined();
  });
});

/** An authenticator answering `attempt` (asynchronously when `async`). */
function fakeAuthenticator(method: AuthMethod, attempt: AuthAttempt, async = false): Authenticator {
  return {
    method,
    challenge: `${method} realm="gw"`,
    invalidChallenge: `${method} error="invalid_token"`,
    authenticate: () => (async ? Promise.resolve(attempt) : attempt),
    close: () => Promise.resolve(),
  };
}

describe('authenticate', () => {
  const config = withAuth({ forwardCredentials: true, apiKey: { header: 'X_Api_Key' } });
  const consumer = { id: 'c1', tier: 'gold', roles: ['reader'] };
  const build = (authenticators: Partial<Authenticators>, auth: AuthMethod[] = ['jwt', 'apiKey']) =>
    authenticate.build(
      routeWith({ auth }),
      config,
      testDeps([AUTHENTICATORS, { jwt: null, apiKey: null, mtls: null, ...authenticators }], [METRICS, null]),
    );

  it('is not built for a route without auth', () => {
    expect(authenticate.build(baseRoute, config, testDeps())).toBeNull();
  });

  it('a valid credential makes the consumer; the upstream gets X-Consumer-* and not the API key', async () => {
    const instance = build({
      jwt: fakeAuthenticator('jwt', { kind: 'absent' }),
      apiKey: fakeAuthenticator('apiKey', { kind: 'ok', consumer }, true),
    }) as RequestStage;
    const ctx = testContext({
      upstreamHeaders: ['x-api-key', 'k', 'authorization', 'Basic eA==', 'accept', '*/*'],
    });
    expect(await instance.onRequest(ctx)).toBeUndefined();
    expect(ctx.consumer).toEqual(consumer);
    expect(ctx.upstreamHeaders).toEqual([
      'accept',
      '*/*',
      'x-consumer-id',
      'c1',
      'x-consumer-tier',
      'gold',
      'x-consumer-roles',
      'reader',
    ]);
  });

  it('no valid credential: 401 with one challenge per method (invalid_token for a refused one)', () => {
    const instance = build({
      jwt: fakeAuthenticator('jwt', { kind: 'invalid', reason: 'expired' }),
      apiKey: fakeAuthenticator('apiKey', { kind: 'absent' }),
    }) as RequestStage;
    expect(instance.onRequest(testContext())).toMatchObject({
      status: 401,
      code: 'unauthenticated',
      headers: ['www-authenticate', 'jwt error="invalid_token"', 'www-authenticate', 'apiKey realm="gw"'],
    });
  });

  it('a method that cannot check (its store is down) and no valid credential: 503 store_unavailable', () => {
    const instance = build({
      jwt: fakeAuthenticator('jwt', { kind: 'unavailable', reason: 'jwks down' }),
      apiKey: fakeAuthenticator('apiKey', { kind: 'absent' }),
    }) as RequestStage;
    expect(instance.onRequest(testContext())).toMatchObject({
      status: 503,
      code: 'store_unavailable',
      headers: ['retry-after', '1'],
    });
  });

  it('writes the consumer into the access-log record', () => {
    const instance = build({ jwt: fakeAuthenticator('jwt', { kind: 'ok', consumer }) }, ['jwt']);
    const ctx = testContext({ consumer, stages: [instance as StageInstance] });
    const record = accessRecord({ ...responseOf(ctx), ctx }, 200, 1);
    expect(record).toMatchObject({ consumerId: 'c1', tier: 'gold', rateLimit: null });
  });
});

describe('authorize', () => {
  const instance = authorize.build(
    routeWith({ permissions: ['orders:read'] }),
    base,
    testDeps(),
  ) as RequestStage;

  it('is not built for a route without permissions', () => {
    expect(authorize.build(baseRoute, base, testDeps())).toBeNull();
  });

  it('lets a consumer through whose roles grant every permission, else 403 naming the one missing', () => {
    const as = (roles: string[]) => testContext({ consumer: { id: 'c', tier: '', roles } });
    expect(instance.onRequest(as(['reader']))).toBeUndefined();
    expect(instance.onRequest(as(['admin']))).toBeUndefined();
    expect(instance.onRequest(as([]))).toMatchObject(forbidden('permission "orders:read" is required'));
    expect(instance.onRequest(testContext())).toMatchObject({ status: 403, code: 'forbidden' });
  });
});

describe('rate-limit: its response and log halves', () => {
  const instance = rateLimit.build(
    routeWith({ rateLimit: 'ip' }),
    base,
    // only the response and log halves are used here: no store is consulted
    testDeps([METRICS, null], [RATE_LIMITER, { plans: new Map() } as unknown as RateLimiter]),
  );

  it('fills tier and decision into the access-log record, over the consumer tier', () => {
    const ctx = testContext({
      consumer: { id: 'c', tier: 'gold', roles: [] },
      stages: [instance as StageInstance],
    });
    ctx.set(TIER, 'free');
    ctx.set(DECISION, 'allowed');
    expect(accessRecord({ ...responseOf(ctx), ctx }, 200, 1)).toMatchObject({
      consumerId: null, // no authenticate stage on this route
      tier: 'free',
      rateLimit: 'allowed',
    });
  });

  it('adds nothing to a response when it decided nothing', () => {
    const ctx = testContext({ stages: [instance as StageInstance] });
    const headers = ['content-type', 'text/plain'];
    ctx.responseHeaders(headers, 200);
    expect(headers).toEqual(['content-type', 'text/plain']);
  });
});

describe('testContext', () => {
  it('is a context on a real request and response, with what the server would have set', () => {
    const ctx = testContext({
      url: '/a/b?x=1',
      headers: { Authorization: 'Bearer t' },
      clientIp: '10.0.0.1',
    });
    expect([ctx.path, ctx.query, ctx.clientIp, ctx.req.headers.authorization]).toEqual([
      '/a/b',
      'x=1',
      '10.0.0.1',
      'Bearer t',
    ]);
    expect(ctx.route.name).toBe('test');
    expect(ctx.get(TIER)).toBeUndefined();
  });
});

/** The observer's view of a context's response. */
function responseOf(ctx: RequestContext) {
  return {
    req: ctx.req,
    headersSent: true,
    statusCode: 200,
    startTime: 0,
    requestId: ctx.requestId,
    trace: null,
    problemCode: null,
    bytesOut: 0,
  };
}
