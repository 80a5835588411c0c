/**
 * HTTP/1.1, HTTPS, HTTP/2 over TLS and h2c into one gateway: the same routes, auth, limits,
 * headers, errors and metrics, whichever way a request comes.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestPki } from '../helpers/certificates.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { AUDIENCE, ISSUER, makeKey, sign, type TestKey } from '../helpers/jwks.js';
import { ProtocolClients, WAYS, type Answer, type Way } from '../helpers/protocol-clients.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

let pki: TestPki;
let upstream: Upstream;
let gw: TestGateway;
let clients: ProtocolClients;
let key: TestKey;

beforeAll(async () => {
  pki = new TestPki();
  const server = pki.server(['localhost', 'api.test']);
  key = await makeKey('k1');
  const keyFile = join(pki.dir, 'jwt.pem');
  writeFileSync(keyFile, key.publicPem);
  upstream = await startUpstream();
  gw = await startGateway(`
listen:
  host: 127.0.0.1
  port: 0
  tls: { cert: "${server.cert}", key: "${server.key}" }
  plain: { port: 0, mode: serve }
  http2: { cleartext: true }
admin: { host: 127.0.0.1, port: 0 }
auth:
  jwt: { algorithms: [RS256], issuer: "${ISSUER}", audience: ${AUDIENCE}, publicKeys: ["${keyFile}"] }
rbac:
  roles:
    reader: [orders:read]
rateLimit:
  tiers:
    anonymous: { limits: [{ requests: 1000, per: 1m }] }
services:
  echo: { targets: ["${upstream.url}"] }
routes:
  - { name: public, match: { path: /public/** }, service: echo, rateLimit: "off" }
  - { name: orders, match: { path: /orders/** }, service: echo, auth: [jwt], permissions: [orders:read], rateLimit: "off" }
  - { name: limited, match: { path: /limited/** }, service: echo, rateLimit: ip }
`);
  clients = new ProtocolClients(
    { tls: gw.gateway.port, plain: gw.gateway.plainPort as number },
    { ca: pki.ca.certPem },
  );
});

afterAll(async () => {
  clients?.close();
  await gw?.close();
  await upstream?.close();
  pki?.remove();
});

type Echoed = { method: string; url: string; headers: Record<string, string>; body: string };
const echoed = (a: Answer) => JSON.parse(a.body.toString()) as Echoed;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const secure = (way: Way) => way === 'https/1.1' || way === 'h2';

/** The upstream's view of a request, without what differs by nature (ids, ports, the scheme). */
function upstreamView(a: Answer) {
  const e = echoed(a);
  const {
    'x-request-id': id,
    traceparent,
    'x-forwarded-host': _host,
    'x-forwarded-proto': _proto,
    forwarded: _forwarded,
    host: _upstreamHost,
    connection: _connection,
    'content-length': _length,
    'transfer-encoding': _te,
    ...rest
  } = e.headers;
  expect(id).toMatch(UUID);
  expect(traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/);
  return { method: e.method, url: e.url, headers: rest, body: e.body };
}

/** The gateway's own response headers, the same whichever the protocol. */
function gatewayHeaders(a: Answer) {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(a.headers)) {
    if (k === 'date' || k === 'x-request-id' || k === 'connection' || k === 'keep-alive') continue;
    // the echoed body says which scheme and port it came by: its length differs by a byte or two
    if (k === 'content-length' && a.headers['content-type'] === 'application/json') continue;
    out[k] = k.startsWith('ratelimit') ? String(v).replace(/t=\d+/, 't=?') : v;
  }
  return out;
}

async function everyWay(path: string, options: Parameters<ProtocolClients['send']>[2] = {}) {
  const out = new Map<Way, Answer>();
  for (const way of WAYS) out.set(way, await clients.send(way, path, options));
  return out;
}

describe('one flow, four ways in', () => {
  it('a proxied GET: same status, upstream view and gateway headers; the scheme is the connection’s', async () => {
    const answers = await everyWay('/public/a?b=1', {
      headers: { 'x-test': 'yes', 'x-consumer-id': 'forged' },
    });
    const views = [...answers.values()].map(upstreamView);
    for (const v of views) expect(v).toEqual(views[0]);
    expect(views[0]).toMatchObject({ method: 'GET', url: '/public/a?b=1', headers: { 'x-test': 'yes' } });
    expect(views[0]?.headers).not.toHaveProperty('x-consumer-id');
    const heads = [...answers.values()].map(gatewayHeaders);
    for (const h of heads) expect(h).toEqual(heads[0]);
    for (const [way, a] of answers) {
      expect(a.status).toBe(200);
      expect(a.headers['x-request-id']).toMatch(UUID);
      const e = echoed(a);
      expect(e.headers['x-forwarded-proto']).toBe(secure(way) ? 'https' : 'http');
      expect(e.headers.forwarded).toMatch(secure(way) ? /proto=https/ : /proto=http;/);
      // :authority (HTTP/2) or Host (HTTP/1.1): the same host reaches the upstream
      expect(e.headers['x-forwarded-host']).toMatch(/^(127\.0\.0\.1|localhost):\d+$/);
    }
  });

  it('a body with or without Content-Length reaches the upstream whole', async () => {
    const body = 'x'.repeat(100_000);
    const answers = await everyWay('/public/upload', {
      method: 'POST',
      body,
      headers: { 'content-type': 'text/plain' },
    });
    for (const a of answers.values()) {
      expect(a.status).toBe(200);
      expect(echoed(a).body).toBe(body);
    }
  });

  it('errors are the same problem+json', async () => {
    const answers = await everyWay('/nowhere');
    for (const a of answers.values()) {
      expect(a.status).toBe(404);
      expect(a.headers['content-type']).toBe('application/problem+json');
      const p = JSON.parse(a.body.toString()) as Record<string, unknown>;
      expect(p).toMatchObject({ code: 'no_route', status: 404 });
      expect(p.instance).toBe(`urn:uuid:${String(a.headers['x-request-id'])}`);
    }
    const heads = [...answers.values()].map(gatewayHeaders);
    for (const h of heads) expect(h).toEqual(heads[0]);
  });

  it('authentication and RBAC: 401 with its challenge, 403, and 200', async () => {
    const reader = await sign(key, { roles: ['reader'] });
    const nobody = await sign(key, { roles: [] });
    for (const way of WAYS) {
      const none = await clients.send(way, '/orders/1');
      expect(none.status).toBe(401);
      expect(none.headers['www-authenticate']).toMatch(/^Bearer/);
      const denied = await clients.send(way, '/orders/1', { headers: { authorization: `Bearer ${nobody}` } });
      expect(denied.status).toBe(403);
      const ok = await clients.send(way, '/orders/1', { headers: { authorization: `Bearer ${reader}` } });
      expect(ok.status).toBe(200);
      expect(echoed(ok).headers['x-consumer-id']).toBe('user-1');
    }
  });

  it('an error answered before the request body is read leaves the connection usable', async () => {
    const body = 'b'.repeat(1_000_000);
    for (const way of WAYS) {
      const refused = await clients.send(way, '/orders/1', { method: 'POST', body });
      expect(refused.status).toBe(401);
      expect((await clients.send(way, '/public/next')).status).toBe(200);
    }
  });

  it('rate limits count every way alike and say so in the same headers', async () => {
    const answers = await everyWay('/limited/x');
    const names = [...answers.values()].map((a) =>
      Object.keys(a.headers)
        .filter((h) => h.startsWith('ratelimit'))
        .sort(),
    );
    expect(names[0]?.length).toBeGreaterThan(0);
    for (const n of names) expect(n).toEqual(names[0]);
    const remaining = [...answers.values()].map((a) => /r=(\d+)/.exec(String(a.headers.ratelimit))?.[1]);
    // one client address, one counter: each way's request took one more
    expect(remaining.map(Number)).toEqual([999, 998, 997, 996].slice(0, remaining.length));
  });

  it('HTTP/2 answers carry no connection-specific header, even while the upstream sends them', async () => {
    for (const way of ['h2', 'h2c'] as const) {
      const a = await clients.send(way, '/public/x');
      for (const h of ['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'proxy-connection'])
        expect(a.headers).not.toHaveProperty(h);
    }
  });

  it('metrics count the requests of every way under the route', async () => {
    const before = await requestsOf('public');
    await everyWay('/public/count');
    expect((await requestsOf('public')) - before).toBe(4);
  });

  it('HTTP/2 streams run concurrently on one connection', async () => {
    const session = clients.session('h2');
    const answers = await Promise.all(
      Array.from({ length: 20 }, (_, i) => clients.sendH2(session, `/public/c${i}`)),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(20).fill(200));
    expect(answers.map((a) => echoed(a).url)).toEqual(Array.from({ length: 20 }, (_, i) => `/public/c${i}`));
  });
});

async function requestsOf(route: string): Promise<number> {
  const text = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  let total = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('gatehouse_requests_total{') && line.includes(`route="${route}"`))
      total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}

describe('shutdown with HTTP/2 sessions open', () => {
  it('the session gets a GOAWAY, the stream in flight finishes, then the gateway stops', async () => {
    const slow = await startUpstream((req, res) => {
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end('late');
      }, 300);
    });
    const server = pki.server(['localhost']);
    const own = await startGateway(`
listen: { host: 127.0.0.1, port: 0, tls: { cert: "${server.cert}", key: "${server.key}" } }
services:
  slow: { targets: ["${slow.url}"] }
routes:
  - { name: slow, match: { path: /** }, service: slow }
`);
    const c = new ProtocolClients({ tls: own.gateway.port, plain: 0 }, { ca: pki.ca.certPem });
    try {
      const session = c.session('h2');
      const goaway = new Promise<number>((resolve) =>
        session.once('goaway', (code: number) => resolve(code)),
      );
      const inFlight = c.sendH2(session, '/x');
      await expect.poll(() => slow.received.length).toBe(1);
      const stopped = own.close(5000);
      expect(await goaway).toBe(0);
      const a = await inFlight;
      expect(a.status).toBe(200);
      expect(a.body.toString()).toBe('late');
      await stopped;
    } finally {
      c.close();
      await slow.close();
    }
  });
});
