/**
 * The data plane end to end: headers in both directions, routing, bodies and limits, through
 * the real gateway and real upstream servers.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { deferred, expectProblem, request, type Reply } from '../helpers/http-client.js';
import { RawSession, parseResponse } from '../helpers/raw-session.js';
import { echo, startUpstream, type Upstream } from '../helpers/upstream.js';

type Echoed = { method: string; url: string; headers: Record<string, string | string[]>; body: string };
const echoed = (r: Reply) => JSON.parse(r.body.toString()) as Echoed;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** An upstream whose answers are scripted by path; anything else is echoed. */
function scripted(req: IncomingMessage, res: ServerResponse): void {
  switch (req.url) {
    case '/hop':
      res.writeHead(200, [
        'Content-Type',
        'text/plain',
        'Connection',
        'X-Internal, x-other',
        'X-Internal',
        'secret',
        'X-Other',
        'also secret',
        'Keep-Alive',
        'timeout=77, max=999',
        'Proxy-Authenticate',
        'Basic realm="upstream"',
        'Proxy-Connection',
        'keep-alive',
        'Trailer',
        'X-Checksum',
        'Upgrade',
        'h2c',
        'X-Kept',
        'yes',
      ]);
      res.end('ok');
      return;
    case '/cookies':
      res.writeHead(200, ['Set-Cookie', 'a=1; Path=/', 'Set-Cookie', 'b=2; HttpOnly', 'Content-Length', '0']);
      res.end();
      return;
    case '/request-id':
      res.writeHead(200, ['X-Request-Id', 'upstream-made-this-up', 'Content-Length', '0']);
      res.end();
      return;
    default:
      echo(req, res, 0);
  }
}

describe('request and response headers', () => {
  let upstream: Upstream;
  let plain: TestGateway;
  let trusting: TestGateway;
  const routes = (url: string) => `
services:
  svc: { targets: ["${url}"] }
routes:
  - { name: all, match: { path: /** }, service: svc }
`;
  beforeAll(async () => {
    upstream = await startUpstream(scripted);
    plain = await startGateway(routes(upstream.url));
    trusting = await startGateway(`trustedProxies: [127.0.0.1/8]\n${routes(upstream.url)}`);
  });
  afterAll(async () => {
    await plain.close();
    await trusting.close();
    await upstream.close();
  });

  describe('X-Request-Id', () => {
    it('is generated when the client sends none, and is the same upstream and on the response', async () => {
      const r = await request(`${plain.url}/a`);
      expect(r.status).toBe(200);
      const id = r.headers['x-request-id'];
      expect(id).toMatch(UUID);
      expect(echoed(r).headers['x-request-id']).toBe(id);
    });

    it('is kept when the client sends a sane one', async () => {
      const r = await request(`${plain.url}/a`, { headers: { 'x-request-id': 'client-id_1.2:3' } });
      expect(r.headers['x-request-id']).toBe('client-id_1.2:3');
      expect(echoed(r).headers['x-request-id']).toBe('client-id_1.2:3');
    });

    it.each([
      ['too long', 'a'.repeat(129)],
      ['a space', 'abc def'],
      ['a semicolon', 'abc;rm'],
      ['a quote and angle brackets', '"><script>'],
      ['a non-ASCII byte', 'caf\u00e9'],
      ['empty', ''],
    ])('is replaced when it has %s', async (_what, sent) => {
      const r = await request(`${plain.url}/a`, { headers: { 'x-request-id': sent } });
      const id = r.headers['x-request-id'];
      expect(id).toMatch(UUID);
      const upstreamSaw = echoed(r).headers['x-request-id'];
      expect(upstreamSaw).toBe(id);
    });

    it('is replaced when the client sends two', async () => {
      const r = await request(`${plain.url}/a`, { headers: { 'x-request-id': ['one', 'two'] } });
      expect(r.headers['x-request-id']).toMatch(UUID);
      expect(echoed(r).headers['x-request-id']).toBe(r.headers['x-request-id']);
    });

    it("replaces the upstream's own X-Request-Id on the response", async () => {
      const r = await request(`${plain.url}/request-id`, { headers: { 'x-request-id': 'mine' } });
      expect(r.rawHeaders.filter((h) => h.toLowerCase() === 'x-request-id')).toHaveLength(1);
      expect(r.headers['x-request-id']).toBe('mine');
    });

    it('is on gateway errors too, kept or generated, and is the problem instance', async () => {
      const gw404 = await startGateway(`
services:
  svc: { targets: ["${upstream.url}"] }
routes:
  - { name: only, match: { path: /only }, service: svc }
`);
      try {
        const a = await request(`${gw404.url}/nope`, { headers: { 'x-request-id': 'err-1' } });
        expect(expectProblem(a, 404, 'no_route').instance).toBe('tag:gatehouse.dev,2026:request:err-1');
        const b = await request(`${gw404.url}/nope`, { headers: { 'x-request-id': 'bad id' } });
        expect(expectProblem(b, 404, 'no_route').instance.replace(/^urn:uuid:/, '')).toMatch(UUID);
      } finally {
        await gw404.close();
      }
    });
  });

  describe('X-Forwarded-*', () => {
    const spoofed = {
      'x-forwarded-for': '203.0.113.7',
      'x-forwarded-proto': 'https',
      'x-forwarded-host': 'evil.example',
    };

    it('are set from the peer when the client sends none', async () => {
      const r = await request(`${plain.url}/a`);
      const h = echoed(r).headers;
      expect(h['x-forwarded-for']).toBe('127.0.0.1');
      expect(h['x-forwarded-proto']).toBe('http');
      expect(h['x-forwarded-host']).toBe(new URL(plain.url).host);
    });

    it('ignore client-sent values when the peer is not a trusted proxy', async () => {
      const r = await request(`${plain.url}/a`, { headers: spoofed });
      const h = echoed(r).headers;
      expect(h['x-forwarded-for']).toBe('127.0.0.1');
      expect(h['x-forwarded-proto']).toBe('http');
      expect(h['x-forwarded-host']).toBe(new URL(plain.url).host);
    });

    it('append the peer to, and keep, the values a trusted proxy sent', async () => {
      const r = await request(`${trusting.url}/a`, { headers: spoofed });
      const h = echoed(r).headers;
      expect(h['x-forwarded-for']).toBe('203.0.113.7, 127.0.0.1');
      expect(h['x-forwarded-proto']).toBe('https');
      expect(h['x-forwarded-host']).toBe('evil.example');
    });

    it('join a multi-header X-Forwarded-For from a trusted proxy into one list', async () => {
      const r = await request(`${trusting.url}/a`, {
        headers: { 'x-forwarded-for': ['198.51.100.1', '10.0.0.2'] },
      });
      const upstreamSaw = upstream.received.at(-1);
      expect(echoed(r).headers['x-forwarded-for']).toBe('198.51.100.1, 10.0.0.2, 127.0.0.1');
      expect(upstreamSaw?.rawHeaders.filter((h) => h.toLowerCase() === 'x-forwarded-for')).toHaveLength(1);
    });

    it('are set from the peer by a trusting gateway when the client sends none', async () => {
      const h = echoed(await request(`${trusting.url}/a`)).headers;
      expect(h['x-forwarded-for']).toBe('127.0.0.1');
      expect(h['x-forwarded-proto']).toBe('http');
      expect(h['x-forwarded-host']).toBe(new URL(trusting.url).host);
    });
  });

  describe('hop-by-hop headers', () => {
    it('are not forwarded upstream, nor the ones Connection names', async () => {
      const r = await request(`${plain.url}/a`, {
        method: 'POST',
        headers: {
          connection: 'keep-alive, X-Secret-Hop, x-second',
          'x-secret-hop': '1',
          'x-second': '2',
          'keep-alive': 'timeout=9',
          te: 'trailers',
          trailer: 'X-Foo',
          upgrade: 'h2c',
          'proxy-authorization': 'Basic Zm9vOmJhcg==',
          'proxy-connection': 'keep-alive',
          'x-kept': 'yes',
          'content-type': 'text/plain',
        },
        body: 'hello',
      });
      expect(r.status).toBe(200);
      const e = echoed(r);
      const names = Object.keys(e.headers);
      for (const h of [
        'x-secret-hop',
        'x-second',
        'keep-alive',
        'te',
        'trailer',
        'upgrade',
        'proxy-authorization',
        'proxy-connection',
      ]) {
        expect(names).not.toContain(h);
      }
      expect(e.headers.connection).toBe('keep-alive'); // undici's own
      expect(e.headers['x-kept']).toBe('yes');
      expect(e.headers['content-type']).toBe('text/plain');
      expect(e.body).toBe('hello');
      // (the client sent this body chunked, because of its Trailer header; undici frames it anew)
      expect(e.headers['transfer-encoding']).toBe('chunked');
    });

    it('are not returned to the client, nor the ones Connection names', async () => {
      const r = await request(`${plain.url}/hop`, { agent: false });
      expect(r.status).toBe(200);
      expect(r.body.toString()).toBe('ok');
      const names = r.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
      for (const h of [
        'x-internal',
        'x-other',
        'proxy-authenticate',
        'proxy-connection',
        'trailer',
        'upgrade',
      ]) {
        expect(names).not.toContain(h);
      }
      expect(JSON.stringify(r.rawHeaders)).not.toMatch(/secret|max=999|timeout=77|X-Internal|h2c/i);
      expect(r.headers['x-kept']).toBe('yes');
      expect(r.headers['content-type']).toBe('text/plain');
    });

    it('client-sent X-Consumer-* headers are removed', async () => {
      const r = await request(`${plain.url}/a`, {
        headers: {
          'x-consumer-id': 'admin',
          'X-Consumer-Tier': 'pro',
          'x-CONSUMER-roles': 'admin',
          'x-consumerish': 'k',
        },
      });
      const names = Object.keys(echoed(r).headers);
      expect(names.filter((n) => n.startsWith('x-consumer-'))).toEqual([]);
      expect(names).toContain('x-consumerish');
    });
  });

  it('keeps duplicate Set-Cookie headers', async () => {
    const r = await request(`${plain.url}/cookies`);
    expect(r.headers['set-cookie']).toEqual(['a=1; Path=/', 'b=2; HttpOnly']);
  });
});

describe('upstream connection reuse', () => {
  let upstream: Upstream;
  let gw: TestGateway;
  let connections = 0;
  beforeAll(async () => {
    upstream = await startUpstream();
    upstream.server.on('connection', () => connections++);
    gw = await startGateway(`
services:
  svc: { targets: ["${upstream.url}"], pool: { connections: 4 } }
routes:
  - { name: all, match: { path: /** }, service: svc }
`);
  });
  afterAll(async () => {
    await gw.close();
    await upstream.close();
  });

  it('a client sending Connection: close does not cost an upstream connection per request', async () => {
    for (let i = 0; i < 5; i++) {
      const r = await request(`${gw.url}/n/${i}`, { headers: { connection: 'close' } });
      expect(r.status).toBe(200);
      expect(r.headers.connection).toBe('close');
      expect(echoed(r).headers.connection).toBe('keep-alive');
    }
    expect(connections).toBe(1);
  });
});

describe('routing end to end', () => {
  let a: Upstream;
  let b: Upstream;
  let gw: TestGateway;
  const tagged =
    (tag: string) =>
    (req: IncomingMessage, res: ServerResponse): void => {
      res.setHeader('x-upstream', tag);
      echo(req, res, 0);
    };
  beforeAll(async () => {
    a = await startUpstream(tagged('a'));
    b = await startUpstream(tagged('b'));
    gw = await startGateway(`
services:
  pair: { targets: ["${a.url}", "${b.url}"] }
  one: { targets: ["${a.url}"] }
routes:
  - { name: api, match: { path: /api/** }, service: one, stripPrefix: /api }
  - { name: deep, match: { path: /svc/v1/** }, service: one, stripPrefix: /svc/v1/ }
  - { name: rr, match: { path: /rr/** }, service: pair }
  - { name: head-only, match: { path: /head/**, methods: [HEAD] }, service: one }
  - { name: post-only, match: { path: /post/**, methods: [POST] }, service: one }
`);
  });
  afterAll(async () => {
    await gw.close();
    await a.close();
    await b.close();
  });

  it('strips the prefix', async () => {
    expect(echoed(await request(`${gw.url}/api/orders/7`)).url).toBe('/orders/7');
    expect(echoed(await request(`${gw.url}/svc/v1/x/y`)).url).toBe('/x/y');
  });

  it('passes the query string unchanged', async () => {
    const q = '?b=2&a=1&a=3&empty=&enc=%20%2F%3F&plus=a+b&flag';
    expect(echoed(await request(`${gw.url}/api/q${q}`)).url).toBe(`/q${q}`);
  });

  it('takes turns across two targets (round-robin)', async () => {
    const seen: string[] = [];
    for (let i = 0; i < 6; i++) seen.push(String((await request(`${gw.url}/rr/${i}`)).headers['x-upstream']));
    expect(seen.filter((s) => s === 'a')).toHaveLength(3);
    expect(seen.filter((s) => s === 'b')).toHaveLength(3);
    for (let i = 1; i < seen.length; i++) expect(seen[i]).not.toBe(seen[i - 1]);
  });

  it('routes by method: HEAD to a HEAD route, without a body; GET there is no_route', async () => {
    const head = await request(`${gw.url}/head/x`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.body.length).toBe(0);
    expect(Number(head.headers['content-length'])).toBeGreaterThan(0);
    expect(a.received.at(-1)?.method).toBe('HEAD');
    expectProblem(await request(`${gw.url}/head/x`), 404, 'no_route');
  });

  it('forwards a POST with its body to a POST route', async () => {
    const r = await request(`${gw.url}/post/x`, { method: 'POST', body: 'payload' });
    const e = echoed(r);
    expect(e.method).toBe('POST');
    expect(e.body).toBe('payload');
    expect(e.headers['content-length']).toBe('7');
  });
});

describe('request body limit', () => {
  let upstream: Upstream;
  let gw: TestGateway;
  const events: string[] = [];
  let arrived = deferred();
  let gone = deferred();
  beforeAll(async () => {
    upstream = await startUpstream((req, res) => {
      events.push('request');
      arrived.resolve();
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => {
        events.push('end');
        res.end(String(n));
      });
      res.on('close', () => {
        if (!res.writableFinished) events.push('aborted');
        gone.resolve();
      });
    });
    gw = await startGateway(`
limits: { bodySize: 1kb }
services:
  svc: { targets: ["${upstream.url}"], timeouts: { response: 2s } }
routes:
  - { name: all, match: { path: /** }, service: svc }
`);
  });
  afterAll(async () => {
    await gw.close();
    await upstream.close();
  });

  it('accepts a body at the limit, with Content-Length or chunked', async () => {
    const body = Buffer.alloc(1024, 'x');
    const r1 = await request(`${gw.url}/a`, { method: 'POST', body });
    expect(r1.body.toString()).toBe('1024');
    const chunked = await request(`${gw.url}/a`, {
      method: 'POST',
      headers: { 'transfer-encoding': 'chunked' },
      body: body.toString(),
    });
    expect(chunked.body.toString()).toBe('1024');
  });

  it('answers 413 to a node:http client uploading far more than the limit, with Content-Length or chunked', async () => {
    const big = Buffer.alloc(2 * 1024 * 1024, 'z');
    expectProblem(await request(`${gw.url}/a`, { method: 'POST', body: big }), 413, 'body_too_large');
    const chunks = Readable.from(
      (function* () {
        for (let i = 0; i < big.length; i += 16 * 1024) yield big.subarray(i, i + 16 * 1024);
      })(),
    );
    expectProblem(await request(`${gw.url}/a`, { method: 'POST', body: chunks }), 413, 'body_too_large');
  });

  it('refuses a Content-Length over the limit at once: 413 body_too_large, nothing sent upstream', async () => {
    events.length = 0;
    const s = await RawSession.open(gw.gateway.port);
    try {
      s.write('POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n');
      const text = await s.waitFor((t) => parseResponse(t) !== null);
      const res = parseResponse(text);
      expectProblem({ status: res!.status, headers: res!.headers, body: res!.body }, 413, 'body_too_large');
      expect(res!.headers.connection).toBe('close');
      expect(events).toEqual([]);
    } finally {
      s.destroy();
    }
  });

  it('stops a chunked body that crosses the limit while streaming: 413, upstream request aborted', async () => {
    events.length = 0;
    arrived = deferred();
    gone = deferred();
    const s = await RawSession.open(gw.gateway.port);
    try {
      const chunk = Buffer.alloc(600, 'y');
      s.write('POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n');
      s.write(`258\r\n${chunk.toString()}\r\n`);
      await arrived.promise; // the upload is already streaming to the upstream
      s.write(`258\r\n${chunk.toString()}\r\n`);
      const text = await s.waitFor((t) => parseResponse(t) !== null);
      const res = parseResponse(text)!;
      expectProblem({ status: res.status, headers: res.headers, body: res.body }, 413, 'body_too_large');
      await gone.promise;
      expect(events).toEqual(['request', 'aborted']);
    } finally {
      s.destroy();
    }
  });
});
