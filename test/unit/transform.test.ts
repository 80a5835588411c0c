/**
 * Transformation and routes that answer themselves: templates (placeholders, injection), header
 * operations, path and query rewrites, the transform stage and the respond stage through a test
 * context, and the config checks (gateway-owned headers, conflicts) with their field paths.
 */
import { describe, expect, it } from 'vitest';
import type { Consumer } from '../../src/auth/types.js';
import { loadConfigText } from '../../src/config/load.js';
import { formatProblem } from '../../src/config/problems.js';
import { compileLocation, respond } from '../../src/stages/respond/index.js';
import { Reply, type StageInstance } from '../../src/stages/stage.js';
import { transform } from '../../src/stages/transform/index.js';
import { compileHeaderOps, compilePathRewrite, compileQueryOps } from '../../src/stages/transform/rewrite.js';
import { compileTemplate, render } from '../../src/stages/transform/template.js';
import { configFrom } from '../helpers/gateway.js';
import { testContext, testDeps } from '../helpers/stage-context.js';

const alice: Consumer = {
  id: 'alice',
  tier: 'pro',
  roles: [],
  claims: { team: 'blue', org: { id: 42 }, n: 7 },
};

describe('templates', () => {
  const ctx = testContext({
    consumer: alice,
    clientIp: '192.0.2.4',
    headers: { 'user-agent': 'ua/1', 'x-evil': 'a' },
  });
  it('fill in every placeholder', () => {
    const t = compileTemplate(
      '${consumer.id}|${consumer.tier}|${route.name}|${request.id}|${client.ip}|${header.User-Agent}|${jwt.claim.team}|${jwt.claim.org.id}|${jwt.claim.n}',
    );
    expect(render(t, ctx)).toBe('alice|pro|test|req-1|192.0.2.4|ua/1|blue|42|7');
  });
  it('a constant stays a string; an empty result is dropped', () => {
    expect(compileTemplate('plain')).toBe('plain');
    expect(render(compileTemplate('${jwt.claim.missing}'), ctx)).toBeNull();
    expect(render(compileTemplate('${consumer.id}'), testContext())).toBeNull(); // no consumer
  });
  it('claims exist only on a consumer that has them (a JWT’s)', () => {
    const apiKey = testContext({ consumer: { id: 'k', tier: 'free', roles: [] } });
    expect(render(compileTemplate('x${jwt.claim.team}'), apiKey)).toBe('x');
  });
  it('a value with a control character is dropped whole (no header injection)', () => {
    const evil = testContext({ consumer: { ...alice, claims: { team: 'a\r\nx-injected: 1' } } });
    expect(render(compileTemplate('t=${jwt.claim.team}'), evil)).toBeNull();
    const nul = testContext({ consumer: { ...alice, claims: { team: 'a\u0000b' } } });
    expect(render(compileTemplate('${jwt.claim.team}'), nul)).toBeNull();
    const tab = testContext({ consumer: { ...alice, claims: { team: 'a\tb' } } });
    expect(render(compileTemplate('${jwt.claim.team}'), tab)).toBe('a\tb');
  });
});

describe('header operations', () => {
  it('remove, rename, set, add, names compared case-insensitively', () => {
    const ops = compileHeaderOps({
      remove: ['X-Debug'],
      rename: { 'x-old': 'X-New' },
      set: { 'x-user': '${consumer.id}', 'x-empty': '${jwt.claim.none}' },
      add: { 'x-via': 'gw' },
    });
    const headers = ['X-Debug', '1', 'x-old', 'v', 'X-User', 'forged', 'x-via', 'client', 'x-empty', 'e'];
    ops(testContext({ consumer: alice }), headers);
    expect(headers).toEqual(['x-new', 'v', 'x-via', 'client', 'x-user', 'alice', 'x-via', 'gw']);
  });
});

describe('path rewrites', () => {
  it('prefix: whole segments only', () => {
    const r = compilePathRewrite({ prefix: { from: '/v1/', to: '/api/v1' } });
    expect(r('/v1/users/7')).toBe('/api/v1/users/7');
    expect(r('/v1')).toBe('/api/v1');
    expect(r('/v10/users')).toBe('/v10/users');
    expect(r('/other')).toBe('/other');
    const strip = compilePathRewrite({ prefix: { from: '/api', to: '/' } });
    expect(strip('/api/orders')).toBe('/orders');
    expect(strip('/api')).toBe('/');
    const root = compilePathRewrite({ prefix: { from: '/', to: '/base' } });
    expect(root('/x')).toBe('/base/x');
  });

  it('pattern: named segments and a rest', () => {
    const r = compilePathRewrite({ pattern: { from: '/v1/users/{id}', to: '/users/{id}' } });
    expect(r('/v1/users/42')).toBe('/users/42');
    expect(r('/v1/users/42/x')).toBe('/v1/users/42/x'); // no match: unchanged
    expect(r('/v1/users/')).toBe('/v1/users/');
    const rest = compilePathRewrite({
      pattern: { from: '/v1/{kind}/{id}/{rest*}', to: '/{id}/{kind}/{rest*}' },
    });
    expect(rest('/v1/users/7/orders/9')).toBe('/7/users/orders/9');
    expect(rest('/v1/users/7')).toBe('/7/users');
    expect(rest('/v1/users/7/')).toBe('/7/users/');
    const dots = compilePathRewrite({ pattern: { from: '/a.b/{x}', to: '/{x}' } });
    expect(dots('/aXb/1')).toBe('/aXb/1'); // literal segments are literal, not regex
  });
});

describe('query operations', () => {
  const ops = compileQueryOps({
    remove: ['debug', 'a b'],
    add: { src: 'gw ${consumer.id}', none: '${jwt.claim.x}' },
  });
  it('removes every occurrence (decoded names), adds URL-encoded values', () => {
    const ctx = testContext({ consumer: alice });
    expect(ops(ctx, 'debug=1&keep=2&debug&a+b=3&a%20b=4&x=%ZZ')).toBe('keep=2&x=%ZZ&src=gw%20alice');
    expect(ops(ctx, '')).toBe('src=gw%20alice');
  });
});

describe('the transform stage', () => {
  const config = configFrom(`
services: { svc: { targets: ["http://127.0.0.1:9"] } }
routes:
  - name: t
    match: { path: /v1/** }
    service: svc
    transform:
      preserveHost: true
      request:
        headers: { set: { x-user: "\${consumer.id}" } }
        path: { prefix: { from: /v1, to: /v2 } }
        query: { remove: [debug] }
      response: { headers: { remove: [server] } }
  - { name: plain, match: { path: /p }, service: svc, transform: { response: { headers: { add: { x-a: b } } } } }
  - { name: none, match: { path: /n }, service: svc }
`);
  const stage = (i: number) => transform.build(config.routes[i]!, config, testDeps()) as StageInstance | null;

  it('rewrites the upstream headers, Host, path and query', () => {
    const ctx = testContext({ url: '/v1/a?debug=1&x=2', headers: { host: 'public.test' }, consumer: alice });
    expect(stage(0)?.onRequest?.(ctx)).toBeUndefined();
    expect(ctx.upstreamHeaders).toEqual(['x-user', 'alice', 'host', 'public.test']);
    expect(ctx.upstreamTarget).toBe('/v2/a?x=2');
    const response = ['Server', 'nginx', 'content-type', 'text/plain'];
    stage(0)?.onResponseHeaders?.(ctx, response, 200);
    expect(response).toEqual(['content-type', 'text/plain']);
  });

  it('only response headers: no request half, the upstream target untouched', () => {
    const s = stage(1);
    expect(s?.onRequest).toBeUndefined();
    expect(s?.onResponseHeaders).toBeDefined();
  });

  it('a route without transform has no stage', () => {
    expect(stage(2)).toBeNull();
  });
});

describe('the respond stage', () => {
  const config = configFrom(`
routes:
  - name: m
    match: { path: /m }
    respond: { status: 503, body: "später", headers: { Retry-After: "60" } }
  - name: r
    match: { path: /r/** }
    redirect: { to: "https://new.test\${request.path}\${request.query}" }
`);
  it('a fixed Reply, built once', () => {
    const s = respond.build(config.routes[0]!, config, testDeps()) as StageInstance;
    const a = s.onRequest?.(testContext()) as Reply;
    expect(a).toBeInstanceOf(Reply);
    expect(a.status).toBe(503);
    expect(a.body.toString('utf8')).toBe('später');
    expect(a.headers).toEqual(['content-type', 'text/plain; charset=utf-8', 'Retry-After', '60']);
    expect(s.onRequest?.(testContext())).toBe(a);
  });
  it('a redirect: 308 by default, Location from the path and query', () => {
    const s = respond.build(config.routes[1]!, config, testDeps()) as StageInstance;
    const a = s.onRequest?.(testContext({ url: '/r/x?y=1' })) as Reply;
    expect(a.status).toBe(308);
    expect(a.headers.slice(0, 2)).toEqual(['location', 'https://new.test/r/x?y=1']);
    expect(compileLocation('/fixed')({ path: '/a', query: 'b' })).toBe('/fixed');
  });
});

describe('the config checks', () => {
  const problems = (routes: string, top = '') =>
    (() => {
      const r = loadConfigText(
        `${top}services: { svc: { targets: ["http://127.0.0.1:9"] } }\nroutes:\n${routes}`,
        'gw.yaml',
        { env: {} },
      );
      return r.ok ? [] : r.problems.map(formatProblem);
    })();

  it('a transform may not touch a header the gateway owns, named with its field', () => {
    const out = problems(`  - name: a
    match: { path: /a }
    service: svc
    transform:
      request:
        headers: { set: { X-Forwarded-For: "1.2.3.4" }, remove: [traceparent], rename: { x-a: x-consumer-id }, add: { Host: h } }
      response:
        headers: { remove: [content-length] }
`);
    const owned = (field: string, name: string) =>
      expect(out, out.join('\n')).toContainEqual(
        expect.stringMatching(
          new RegExp(
            `^gw\\.yaml:\\d+:\\d+: routes\\[0\\]\\.transform\\.${field.replace(/[.[\]]/g, '\\$&')}: "${name}" is set by the gateway and cannot be changed by a transform`,
          ),
        ),
      );
    owned('request.headers.set.X-Forwarded-For', 'X-Forwarded-For');
    owned('request.headers.add.Host', 'Host');
    owned('request.headers.rename.x-a', 'x-consumer-id');
    owned('request.headers.remove[0]', 'traceparent');
    owned('response.headers.remove[0]', 'content-length');
    expect(out).toHaveLength(5);
  });

  it('respond, redirect and service: one of them, and path rewrites without stripPrefix', () => {
    const out = problems(`  - { name: a, match: { path: /a }, service: svc, respond: { body: x } }
  - { name: b, match: { path: /b }, respond: { body: x }, redirect: { to: /x } }
  - { name: c, match: { path: /c } }
  - { name: d, match: { path: /d/** }, service: svc, stripPrefix: /d, transform: { request: { path: { prefix: { from: /d, to: /e } } } } }
  - { name: e, match: { path: /e }, redirect: { to: "https://x.test\${request.host}", status: 307 } }
  - { name: f, match: { path: /f }, redirect: { to: /x, status: 200 } }
  - { name: g, match: { path: /g }, service: svc, transform: { request: { path: { pattern: { from: "/g/{id}", to: "/{other}" } } } } }
  - { name: h, match: { path: /h }, respond: { status: 204, body: x, headers: { Content-Length: "1", content-type: a } } }
`);
    const has = (s: string) =>
      expect(
        out.some((l) => l.includes(s)),
        `${s}\n${out.join('\n')}`,
      ).toBe(true);
    has('routes[0].service: must not be set with `respond`');
    has('routes[1].redirect: cannot be used with `respond`');
    has('routes[2].service: is required (or `services`), unless the route answers itself');
    has('routes[3].transform.request.path: cannot be used with `stripPrefix`');
    has('routes[4].redirect.to: "${request.host}" is not a known placeholder');
    has('routes[5].redirect.status:');
    has('routes[6].transform.request.path.pattern.to: {other} is not a placeholder of `from`');
    has('routes[7].respond.body: must be empty: a 204 has no body');
    has('routes[7].respond.headers.Content-Length: "Content-Length" is set by the gateway');
    has('routes[7].respond.headers.content-type: is set by `contentType`');
    expect(out.every((l) => /^gw\.yaml:\d+:\d+: /.test(l))).toBe(true);
  });

  it('CIDRs, CORS credentials with "*" headers, unknown placeholders', () => {
    const out = problems(
      `  - name: a
    match: { path: /a }
    service: svc
    ip: { allow: [10.0.0.0/33, nope] }
    cors: { origins: ["https://a.test"], credentials: true, headers: ["*"] }
    transform: { request: { headers: { add: { x-a: "\${consumer.name}" } } } }
`,
      'ip: { deny: ["::1/129"] }\ncors: { origins: ["https://a.test/path"] }\n',
    );
    const has = (s: string) =>
      expect(
        out.some((l) => l.includes(s)),
        `${s}\n${out.join('\n')}`,
      ).toBe(true);
    has('ip.deny[0]: "::1/129": invalid prefix length');
    has('cors.origins[0]: must be an origin');
    has('routes[0].ip.allow[0]: "10.0.0.0/33": invalid prefix length');
    has('routes[0].ip.allow[1]: "nope" is not an IP address or CIDR');
    has('routes[0].cors.headers: "*" means any header only without credentials');
    has('routes[0].transform.request.headers.add.x-a: "${consumer.name}" is not a known placeholder');
  });
});
