/**
 * The edge policies through the real gateway: CORS (preflights answered before authentication
 * and never proxied, Vary, credentials, wildcard subdomains that must not match look-alikes, the
 * gateway's own 401 readable by the page), IP allow and deny lists (with and without a trusted
 * proxy: a forged X-Forwarded-For does not get through), routes that answer themselves (respond,
 * redirect), and request and response transformation (placeholders, JWT claims, path and query
 * rewrites, preserveHost; a claim carrying CR LF is dropped, never a header line).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { exchange } from '../helpers/hostile.js';
import { expectProblem, request } from '../helpers/http-client.js';
import { AUDIENCE, ISSUER, JwksServer, makeKey, sign, type TestKey } from '../helpers/jwks.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

let upstream: Upstream;
let key: TestKey;
let jwks: JwksServer;
let gw: TestGateway;

/** the upstream answers with what it got, plus its own CORS and Vary headers (to be replaced and merged) */
beforeAll(async () => {
  upstream = await startUpstream((req, res) => {
    const body = JSON.stringify({ url: req.url, headers: req.headers });
    res.writeHead(200, {
      'content-type': 'application/json',
      vary: 'Accept-Encoding',
      'access-control-allow-origin': '*',
      'x-upstream-secret': 'internal',
      'x-old-name': 'renamed',
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
  });
  key = await makeKey('k1');
  jwks = await JwksServer.start([key]);
  gw = await startGateway(`
auth:
  jwt: { algorithms: [RS256], issuer: "${ISSUER}", audience: ${AUDIENCE}, jwksUrl: "${jwks.url}" }
cors:
  origins: ["https://app.example.com", "https://*.example.com"]
  methods: [GET, POST]
  headers: [content-type, authorization]
  exposeHeaders: [x-request-id]
  maxAge: 10m
services:
  echo: { targets: ["${upstream.url}"] }
routes:
  - { name: api, match: { path: /api/** }, service: echo, auth: [jwt] }
  - { name: open, match: { path: /open/** }, service: echo }
  - name: creds
    match: { path: /creds/** }
    service: echo
    cors: { origins: ["*"], credentials: true, headers: ["x-a"] }
  - { name: nocors, match: { path: /nocors/** }, service: echo, cors: false }
  - name: denied
    match: { path: /denied/** }
    service: echo
    ip: { deny: ["127.0.0.0/8", "::1"] }
  - name: internal
    match: { path: /internal/** }
    service: echo
    ip: { allow: ["10.0.0.0/8", "::ffff:192.168.0.0/112"] }
  - name: maintenance
    match: { path: /maintenance/** }
    respond: { status: 503, body: "back soon", headers: { Retry-After: "3600" } }
  - name: moved
    match: { path: /old/** }
    redirect: { to: "https://new.example.com\${request.path}\${request.query}", status: 308 }
  - name: users
    match: { path: /v1/users/*/** }
    service: echo
    auth: [jwt]
    transform:
      preserveHost: true
      request:
        headers:
          remove: [x-debug]
          rename: { x-client-tag: x-tag }
          set: { x-user: "\${consumer.id}", x-team: "\${jwt.claim.team}" }
          add: { x-via: "gw \${route.name} \${client.ip}", x-ua: "\${header.user-agent}" }
        path: { pattern: { from: "/v1/users/{id}/{rest*}", to: "/users/{id}/{rest*}" } }
        query: { add: { source: "gw \${consumer.id}" }, remove: [debug] }
      response:
        headers:
          remove: [x-upstream-secret]
          rename: { x-old-name: x-new-name }
          set: { x-served-by: "\${route.name}" }
  - name: prefixed
    match: { path: /v2/** }
    service: echo
    transform:
      request: { path: { prefix: { from: /v2, to: /api/v2 } } }
`);
});
afterAll(async () => {
  await gw?.close();
  await jwks?.close();
  await upstream?.close();
});

const preflight = (path: string, origin: string, extra: Record<string, string> = {}) =>
  request(`${gw.url}${path}`, {
    method: 'OPTIONS',
    headers: { origin, 'access-control-request-method': 'POST', ...extra },
  });

describe('CORS', () => {
  it('a preflight is answered 204 by the gateway, without credentials and without reaching the upstream', async () => {
    const before = upstream.received.length;
    const res = await preflight('/api/orders', 'https://app.example.com', {
      'access-control-request-headers': 'content-type',
    });
    expect(res.status).toBe(204);
    expect(res.headers['access-control-allow-origin']).toBe('https://app.example.com');
    expect(res.headers['access-control-allow-methods']).toBe('GET, POST');
    expect(res.headers['access-control-allow-headers']).toBe('content-type, authorization');
    expect(res.headers['access-control-max-age']).toBe('600');
    expect(res.headers['access-control-allow-credentials']).toBeUndefined();
    expect(res.headers['vary']).toMatch(/^Origin, /);
    expect(res.body.length).toBe(0);
    expect(upstream.received.length).toBe(before);
  });

  it('a preflight from a disallowed origin gets no CORS header, and is not proxied either', async () => {
    const before = upstream.received.length;
    for (const origin of [
      'https://evil.com',
      'https://evil.com/.example.com',
      'https://example.com.evil.com',
      'https://example.com',
      'http://app.example.com',
    ]) {
      const res = await preflight('/api/orders', origin);
      expect(res.status, origin).toBe(204);
      expect(res.headers['access-control-allow-origin'], origin).toBeUndefined();
      expect(res.headers['access-control-allow-methods'], origin).toBeUndefined();
    }
    expect(upstream.received.length).toBe(before);
  });

  it('the wildcard pattern allows subdomains at any depth', async () => {
    for (const origin of ['https://a.example.com', 'https://a.b.example.com']) {
      const res = await preflight('/api/x', origin);
      expect(res.headers['access-control-allow-origin']).toBe(origin);
    }
  });

  it('a simple request: CORS headers on the upstream answer, its own replaced, Vary merged', async () => {
    const res = await request(`${gw.url}/open/x`, { headers: { origin: 'https://app.example.com' } });
    expect(res.status).toBe(200);
    expect(res.rawHeaders.filter((h) => h.toLowerCase() === 'access-control-allow-origin')).toHaveLength(1);
    expect(res.headers['access-control-allow-origin']).toBe('https://app.example.com');
    expect(res.headers['access-control-expose-headers']).toBe('x-request-id');
    expect(res.headers['vary']).toBe('Accept-Encoding, Origin');
  });

  it('a disallowed origin or no Origin: no CORS header, still Vary: Origin', async () => {
    for (const headers of [{ origin: 'https://evil.com' }, {}]) {
      const res = await request(`${gw.url}/open/x`, { headers });
      expect(res.headers['access-control-allow-origin']).toBeUndefined();
      expect(res.headers['vary']).toBe('Accept-Encoding, Origin');
    }
  });

  it('the gateway’s own 401 carries the CORS headers, so the page can read it', async () => {
    const res = await request(`${gw.url}/api/orders`, { headers: { origin: 'https://app.example.com' } });
    expectProblem(res, 401, 'unauthenticated');
    expect(res.headers['access-control-allow-origin']).toBe('https://app.example.com');
    expect(res.headers['vary']).toBe('Origin');
  });

  it('with credentials, "*" reflects the origin (never "*"), and echoes the requested headers only when listed', async () => {
    const res = await request(`${gw.url}/creds/x`, { headers: { origin: 'https://any.test' } });
    expect(res.headers['access-control-allow-origin']).toBe('https://any.test');
    expect(res.headers['access-control-allow-credentials']).toBe('true');
    expect(res.headers['vary']).toBe('Accept-Encoding, Origin');
    const pre = await preflight('/creds/x', 'https://any.test');
    expect(pre.headers['access-control-allow-origin']).toBe('https://any.test');
    expect(pre.headers['access-control-allow-headers']).toBe('x-a');
    const opaque = await request(`${gw.url}/creds/x`, { headers: { origin: 'null' } });
    expect(opaque.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('cors: false turns the default off: OPTIONS goes to the upstream, its headers pass', async () => {
    const before = upstream.received.length;
    const res = await preflight('/nocors/x', 'https://app.example.com');
    expect(res.status).toBe(200);
    expect(upstream.received.length).toBe(before + 1);
    expect(res.headers['access-control-allow-origin']).toBe('*'); // the upstream's own
  });
});

describe('IP allow and deny lists', () => {
  it('a denied address gets 403 ip_denied, a forged X-Forwarded-For from an untrusted peer changes nothing', async () => {
    const before = upstream.received.length;
    expectProblem(await request(`${gw.url}/denied/x`), 403, 'ip_denied');
    const forged = await request(`${gw.url}/denied/x`, { headers: { 'x-forwarded-for': '203.0.113.9' } });
    expectProblem(forged, 403, 'ip_denied');
    expect(upstream.received.length).toBe(before);
  });

  it('an allow list refuses what it does not hold, forged X-Forwarded-For or not', async () => {
    expectProblem(await request(`${gw.url}/internal/x`), 403, 'ip_denied');
    const forged = await request(`${gw.url}/internal/x`, { headers: { 'x-forwarded-for': '10.1.2.3' } });
    expectProblem(forged, 403, 'ip_denied');
  });

  describe('behind a trusted proxy', () => {
    let trusted: TestGateway;
    beforeAll(async () => {
      trusted = await startGateway(`
trustedProxies: ["127.0.0.1"]
ip: { deny: ["198.51.100.0/24"] }
services:
  echo: { targets: ["${upstream.url}"] }
routes:
  - name: internal
    match: { path: /internal/** }
    service: echo
    ip: { allow: ["10.0.0.0/8", "2001:db8::/32"], deny: ["10.9.0.0/16"] }
  - { name: open, match: { path: /open/** }, service: echo }
`);
    });
    afterAll(() => trusted?.close());

    it('the forwarded client address is what the lists see', async () => {
      const as = (ip: string, path = '/internal/x') =>
        request(`${trusted.url}${path}`, { headers: { 'x-forwarded-for': ip } });
      expect((await as('10.1.2.3')).status).toBe(200);
      expect((await as('2001:db8::7')).status).toBe(200);
      expect((await as('::ffff:10.1.2.3')).status).toBe(200);
      expectProblem(await as('10.9.1.1'), 403, 'ip_denied'); // deny wins over allow
      expectProblem(await as('192.0.2.1'), 403, 'ip_denied');
      expectProblem(await as('198.51.100.4', '/open/x'), 403, 'ip_denied'); // the global list
      expect((await as('192.0.2.1', '/open/x')).status).toBe(200);
    });
  });
});

describe('routes that answer themselves', () => {
  it('respond: the fixed answer, no service, nothing proxied', async () => {
    const before = upstream.received.length;
    const res = await request(`${gw.url}/maintenance/x`, { method: 'POST', body: 'ignored' });
    expect(res.status).toBe(503);
    expect(res.body.toString()).toBe('back soon');
    expect(res.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(res.headers['retry-after']).toBe('3600');
    expect(res.headers['x-request-id']).toBeTruthy();
    expect(upstream.received.length).toBe(before);
  });

  it('respond: HEAD gets the headers without the body; an upgrade gets the answer on its socket', async () => {
    const head = await request(`${gw.url}/maintenance/x`, { method: 'HEAD' });
    expect(head.status).toBe(503);
    expect(head.headers['content-length']).toBe('9');
    expect(head.body.length).toBe(0);
    const before = upstream.received.length;
    const { responses, closed } = await exchange(
      gw.gateway.port,
      'GET /maintenance/ws HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n',
    );
    expect(closed).toBe(true);
    expect(responses).toHaveLength(1);
    expect(responses[0]).toMatchObject({ status: 503 });
    expect(upstream.received.length).toBe(before);
  });

  it('a 204 (the preflight) has no Content-Length and no body', async () => {
    const res = await preflight('/open/x', 'https://app.example.com');
    expect(res.status).toBe(204);
    expect(res.headers['content-length']).toBeUndefined();
  });

  it('redirect: Location built from the path and query', async () => {
    const res = await request(`${gw.url}/old/a/b?x=1&y=2`);
    expect(res.status).toBe(308);
    expect(res.headers['location']).toBe('https://new.example.com/old/a/b?x=1&y=2');
    const bare = await request(`${gw.url}/old/c`);
    expect(bare.headers['location']).toBe('https://new.example.com/old/c');
  });
});

describe('transform', () => {
  type Echo = { url: string; headers: Record<string, string | undefined> };

  it('request headers, path, query and Host are rewritten; response headers too', async () => {
    const token = await sign(key, { sub: 'alice', team: 'blue' });
    const res = await request(`${gw.url}/v1/users/42/orders/7?debug=1&keep=2`, {
      headers: {
        authorization: `Bearer ${token}`,
        host: 'public.example.test',
        'x-debug': 'yes',
        'x-client-tag': 'tag-1',
        'user-agent': 'tester/1',
        'x-user': 'forged',
      },
    });
    expect(res.status).toBe(200);
    const got = JSON.parse(res.body.toString()) as Echo;
    expect(got.url).toBe('/users/42/orders/7?keep=2&source=gw%20alice');
    expect(got.headers['host']).toBe('public.example.test');
    expect(got.headers['x-debug']).toBeUndefined();
    expect(got.headers['x-client-tag']).toBeUndefined();
    expect(got.headers['x-tag']).toBe('tag-1');
    expect(got.headers['x-user']).toBe('alice'); // set replaces the client's
    expect(got.headers['x-team']).toBe('blue');
    expect(got.headers['x-via']).toBe('gw users 127.0.0.1');
    expect(got.headers['x-ua']).toBe('tester/1');
    expect(got.headers['x-consumer-id']).toBe('alice'); // the gateway's own, untouched
    expect(res.headers['x-upstream-secret']).toBeUndefined();
    expect(res.headers['x-old-name']).toBeUndefined();
    expect(res.headers['x-new-name']).toBe('renamed');
    expect(res.headers['x-served-by']).toBe('users');
  });

  it('a claim carrying CR LF is dropped: no header line is smuggled upstream', async () => {
    const token = await sign(key, { sub: 'mallory', team: 'red\r\nx-injected: 1' });
    const res = await request(`${gw.url}/v1/users/1`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    const got = JSON.parse(res.body.toString()) as Echo;
    expect(got.url).toBe('/users/1?source=gw%20mallory');
    expect(got.headers['x-team']).toBeUndefined();
    expect(got.headers['x-injected']).toBeUndefined();
  });

  it('a prefix rewrite replaces whole segments', async () => {
    const got = JSON.parse((await request(`${gw.url}/v2/things?a=1`)).body.toString()) as Echo;
    expect(got.url).toBe('/api/v2/things?a=1');
    expect(got.headers['host']).toBe(`127.0.0.1:${upstream.port}`); // no preserveHost here
  });
});
