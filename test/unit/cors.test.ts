/**
 * CORS: the pure decisions (policy.ts) against the Fetch standard's rules, and the stage through
 * a test context (preflight answered as a Reply, answer headers, Vary merged, upstream CORS
 * headers replaced).
 */
import { describe, expect, it } from 'vitest';
import type { CorsConfig } from '../../src/router/policy-config.js';
import { authenticate } from '../../src/stages/authenticate/index.js';
import { cors } from '../../src/stages/cors/index.js';
import { CorsPolicy, dropCorsHeaders, originPattern, varyOrigin } from '../../src/stages/cors/policy.js';
import { Reply, type StageInstance } from '../../src/stages/stage.js';
import { configFrom } from '../helpers/gateway.js';
import { testContext, testDeps } from '../helpers/stage-context.js';

const policy = (c: Omit<Partial<CorsConfig>, 'methods'> & { origins: string[]; methods?: string[] }) =>
  new CorsPolicy(c as CorsConfig);
const header = (list: readonly string[], name: string) => {
  const i = list.findIndex((v, j) => j % 2 === 0 && v.toLowerCase() === name);
  return i === -1 ? undefined : list[i + 1];
};

describe('origin patterns', () => {
  const re = originPattern('https://*.example.com');
  it('match one or more whole labels before the domain', () => {
    for (const o of ['https://a.example.com', 'https://a-b.c.example.com', 'https://x1.example.com'])
      expect(re.test(o), o).toBe(true);
  });
  it('never the domain itself, another scheme or port, or look-alikes', () => {
    for (const o of [
      'https://example.com',
      'http://a.example.com',
      'https://a.example.com:8443',
      'https://evil.com/.example.com',
      'https://example.com.evil.com',
      'https://a.example.com.evil.com',
      'https://aexample.com',
      'https://.example.com',
      'https://a..example.com',
      'https://-a.example.com',
      'https://a.example.comx',
      'https://a.example.com/',
      'https://a_b.example.com',
    ])
      expect(re.test(o), o).toBe(false);
  });
  it('keep a port when the pattern has one', () => {
    const withPort = originPattern('https://*.example.com:8443');
    expect(withPort.test('https://a.example.com:8443')).toBe(true);
    expect(withPort.test('https://a.example.com')).toBe(false);
  });
});

describe('the CORS decisions', () => {
  it('an allowed origin gets Allow-Origin (and Expose-Headers); a disallowed one nothing', () => {
    const p = policy({ origins: ['https://app.example.com'], exposeHeaders: ['x-request-id'] });
    expect(p.actual('https://app.example.com')).toEqual([
      'access-control-allow-origin',
      'https://app.example.com',
      'access-control-expose-headers',
      'x-request-id',
    ]);
    expect(p.actual('https://other.example.com')).toBeNull();
    expect(p.actual('null')).toBeNull();
    expect(p.varies).toBe(true);
  });

  it('"*" without credentials answers "*" and does not vary by origin', () => {
    const p = policy({ origins: ['*'] });
    expect(header(p.actual('https://x.test') ?? [], 'access-control-allow-origin')).toBe('*');
    expect(p.varies).toBe(false);
  });

  it('never "*" with credentials: the origin is reflected, Vary: Origin, and the opaque origin refused', () => {
    const p = policy({ origins: ['*'], credentials: true });
    const h = p.actual('https://x.test') ?? [];
    expect(header(h, 'access-control-allow-origin')).toBe('https://x.test');
    expect(header(h, 'access-control-allow-credentials')).toBe('true');
    expect(p.varies).toBe(true);
    expect(p.actual('null')).toBeNull();
  });

  it('a preflight gets methods, headers and max age; a disallowed origin only Vary', () => {
    const p = policy({
      origins: ['https://app.example.com'],
      methods: ['GET', 'PUT'],
      headers: ['content-type'],
      maxAge: 600_000,
    });
    const ok = p.preflight('https://app.example.com', 'content-type');
    expect(header(ok, 'access-control-allow-origin')).toBe('https://app.example.com');
    expect(header(ok, 'access-control-allow-methods')).toBe('GET, PUT');
    expect(header(ok, 'access-control-allow-headers')).toBe('content-type');
    expect(header(ok, 'access-control-max-age')).toBe('600');
    expect(header(ok, 'access-control-allow-credentials')).toBeUndefined();
    expect(header(ok, 'vary')).toContain('Origin');
    const no = p.preflight('https://evil.test', undefined);
    expect(no).toEqual(['vary', 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers']);
  });

  it('"*" headers: sent as "*" without credentials; with credentials the requested ones, if well-formed', () => {
    expect(
      header(
        policy({ origins: ['*'], headers: ['*'] }).preflight('https://a.test', 'x-a'),
        'access-control-allow-headers',
      ),
    ).toBe('*');
    const creds = policy({ origins: ['https://a.test'], headers: ['*'], credentials: true });
    expect(header(creds.preflight('https://a.test', 'x-a, x-b'), 'access-control-allow-headers')).toBe(
      'x-a, x-b',
    );
    expect(
      header(creds.preflight('https://a.test', 'x-a\r\nx: 1'), 'access-control-allow-headers'),
    ).toBeUndefined();
  });

  it('defaults: the usual methods, no headers, 5 s max age', () => {
    const h = policy({ origins: ['https://a.test'] }).preflight('https://a.test', undefined);
    expect(header(h, 'access-control-allow-methods')).toBe('GET, HEAD, POST, PUT, PATCH, DELETE');
    expect(header(h, 'access-control-allow-headers')).toBeUndefined();
    expect(header(h, 'access-control-max-age')).toBe('5');
  });
});

describe('Vary and upstream CORS headers', () => {
  it('Vary: Origin is added, merged, or left alone', () => {
    const none = ['content-type', 'x'];
    varyOrigin(none);
    expect(none).toEqual(['content-type', 'x', 'vary', 'Origin']);
    const merged = ['Vary', 'Accept-Encoding'];
    varyOrigin(merged);
    expect(merged).toEqual(['Vary', 'Accept-Encoding, Origin']);
    for (const v of ['*', 'origin', 'Accept, Origin']) {
      const same = ['vary', v];
      varyOrigin(same);
      expect(same).toEqual(['vary', v]);
    }
  });

  it("the upstream's own CORS headers are dropped", () => {
    const h = [
      'Access-Control-Allow-Origin',
      '*',
      'content-type',
      'x',
      'access-control-allow-credentials',
      'true',
    ];
    dropCorsHeaders(h);
    expect(h).toEqual(['content-type', 'x']);
  });
});

describe('the cors stage', () => {
  const config = configFrom(`
cors: { origins: ["https://app.example.com"], credentials: true }
services: { svc: { targets: ["http://127.0.0.1:9"] } }
routes:
  - { name: a, match: { path: /a }, service: svc }
  - { name: off, match: { path: /off }, service: svc, cors: false }
  - { name: own, match: { path: /own }, service: svc, cors: { origins: ["*"] } }
`);
  const build = (i: number) => cors.build(config.routes[i]!, config, testDeps());
  const instance = build(0) as StageInstance;

  it('runs before authentication: a preflight carries no credentials', () => {
    expect(cors.order).toBeLessThan(authenticate.order);
  });

  it('applies the top-level policy, a route’s own, or none (cors: false)', () => {
    expect(instance).not.toBeNull();
    expect(build(1)).toBeNull();
    expect(build(2)).not.toBeNull();
  });

  it('answers a preflight with a 204 Reply', () => {
    const ctx = testContext({
      method: 'OPTIONS',
      headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST' },
    });
    const out = instance.onRequest?.(ctx);
    expect(out).toBeInstanceOf(Reply);
    const reply = out as Reply;
    expect(reply.status).toBe(204);
    expect(header(reply.headers, 'access-control-allow-origin')).toBe('https://app.example.com');
    expect(header(reply.headers, 'access-control-allow-credentials')).toBe('true');
  });

  it('an OPTIONS without Access-Control-Request-Method is not a preflight', () => {
    const ctx = testContext({ method: 'OPTIONS', headers: { origin: 'https://app.example.com' } });
    expect(instance.onRequest?.(ctx)).toBeUndefined();
  });

  it('an allowed simple request: headers for the upstream answer and for the gateway’s own answers', () => {
    const ctx = testContext({ headers: { origin: 'https://app.example.com' } });
    expect(instance.onRequest?.(ctx)).toBeUndefined();
    expect(header(ctx.answerHeaders ?? [], 'access-control-allow-origin')).toBe('https://app.example.com');
    expect(header(ctx.answerHeaders ?? [], 'vary')).toBe('Origin');
    const upstream = ['access-control-allow-origin', '*', 'vary', 'Accept-Encoding'];
    instance.onResponseHeaders?.(ctx, upstream, 200);
    expect(upstream).toEqual([
      'vary',
      'Accept-Encoding, Origin',
      'access-control-allow-origin',
      'https://app.example.com',
      'access-control-allow-credentials',
      'true',
    ]);
  });

  it('a disallowed origin: nothing but Vary', () => {
    const ctx = testContext({ headers: { origin: 'https://evil.test' } });
    expect(instance.onRequest?.(ctx)).toBeUndefined();
    expect(ctx.answerHeaders).toBeNull();
    const upstream: string[] = [];
    instance.onResponseHeaders?.(ctx, upstream, 200);
    expect(upstream).toEqual(['vary', 'Origin']);
  });
});
