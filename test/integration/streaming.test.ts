/**
 * Bodies stream both ways, never buffered whole: large uploads and downloads arrive intact,
 * a slow client slows the upstream down (back-pressure), chunks flow before the body ends,
 * bodiless responses don't hang the connection, and `Expect: 100-continue` works.
 */
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { deferred, expectProblem, request } from '../helpers/http-client.js';
import { RawSession, parseResponse } from '../helpers/raw-session.js';
import { echo, startUpstream, type Upstream } from '../helpers/upstream.js';

const MB = 1024 * 1024;
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** 20 MB of random data, built once. */
const BIG = randomBytes(20 * MB);
const BIG_SHA = sha256(BIG);

/** Test-controlled responses that are still open, by name. */
const pending = new Map<string, ServerResponse>();
const requestArrived = new Map<string, ReturnType<typeof deferred<IncomingMessage>>>();
const arrival = (name: string) => {
  const d = deferred<IncomingMessage>();
  requestArrived.set(name, d);
  return d.promise;
};

/** Back-pressure probe: how much of a huge body the upstream managed to hand to its socket. */
const probe = { written: 0, stalled: false, finished: false };
const HUGE = 96 * MB;

function handler(req: IncomingMessage, res: ServerResponse): void {
  const path = (req.url ?? '').split('?')[0];
  requestArrived.get(path ?? '')?.resolve(req);
  switch (path) {
    case '/upload': {
      const hash = createHash('sha256');
      let n = 0;
      req.on('data', (c: Buffer) => {
        hash.update(c);
        n += c.length;
      });
      req.on('end', () =>
        res.end(
          JSON.stringify({
            sha: hash.digest('hex'),
            length: n,
            contentLength: req.headers['content-length'] ?? null,
            te: req.headers['transfer-encoding'] ?? null,
          }),
        ),
      );
      return;
    }
    case '/download':
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': BIG.length });
      res.end(BIG);
      return;
    case '/download-chunked': {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      Readable.from(
        (function* () {
          for (let i = 0; i < BIG.length; i += 64 * 1024) yield BIG.subarray(i, i + 64 * 1024);
        })(),
      ).pipe(res);
      return;
    }
    case '/huge': {
      // Writes HUGE bytes, always waiting for 'drain' when write() says so.
      probe.written = 0;
      probe.stalled = false;
      probe.finished = false;
      res.writeHead(200, { 'content-length': HUGE });
      const block = Buffer.alloc(256 * 1024, 0x61);
      const pump = () => {
        while (probe.written < HUGE) {
          probe.written += block.length;
          if (!res.write(block)) {
            probe.stalled = true;
            res.once('drain', () => {
              probe.stalled = false;
              pump();
            });
            return;
          }
        }
        res.end(() => (probe.finished = true));
      };
      pump();
      return;
    }
    case '/slow-reader': {
      // Reads nothing until the test says so, then counts the body.
      req.pause();
      pending.set('/slow-reader', res);
      let n = 0;
      req.on('data', (c: Buffer) => (n += c.length));
      req.on('end', () => res.end(String(n)));
      return;
    }
    case '/held':
      // Headers and a first chunk now; the rest when the test says so.
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first;');
      pending.set('/held', res);
      return;
    case '/upload-stream':
      // Answers as soon as the first body chunk arrived, proving the upload is streamed.
      req.once('data', (c: Buffer) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write(`got:${c.toString()};`);
        pending.set('/upload-stream', res);
        req.on('data', (more: Buffer) => res.write(`got:${more.toString()};`));
        req.on('end', () => res.end('end'));
      });
      return;
    case '/204':
      res.writeHead(204, { 'x-kind': 'no-content' });
      res.end();
      return;
    case '/304':
      res.writeHead(304, { etag: '"v1"', 'x-kind': 'not-modified' });
      res.end();
      return;
    case '/304-with-length':
      res.writeHead(304, { etag: '"v1"', 'content-length': '1234' });
      res.end();
      return;
    case '/head':
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '5000' });
      res.end(req.method === 'HEAD' ? undefined : 'x'.repeat(5000));
      return;
    case '/head-chunked':
      res.writeHead(200, { 'content-type': 'text/plain', 'transfer-encoding': 'chunked' });
      res.end(req.method === 'HEAD' ? undefined : 'chunky');
      return;
    default:
      echo(req, res, 0);
  }
}

describe('streaming bodies', () => {
  let upstream: Upstream;
  let gw: TestGateway;
  const sessions: RawSession[] = [];
  const open = async () => {
    const s = await RawSession.open(gw.gateway.port);
    sessions.push(s);
    return s;
  };
  beforeAll(async () => {
    upstream = await startUpstream(handler);
    gw = await startGateway(`
limits: { bodySize: 64mb }
services:
  svc: { targets: ["${upstream.url}"], timeouts: { response: 5s } }
routes:
  - { name: all, match: { path: /** }, service: svc }
`);
  });
  afterEach(() => {
    for (const s of sessions.splice(0)) s.destroy();
    for (const res of pending.values()) res.destroy();
    pending.clear();
    requestArrived.clear();
  });
  afterAll(async () => {
    await gw.close();
    await upstream.close();
  });

  describe('large bodies', () => {
    it('a 20 MB upload with Content-Length reaches the upstream intact', async () => {
      const r = await request(`${gw.url}/upload`, { method: 'PUT', body: BIG });
      expect(r.status).toBe(200);
      const got = JSON.parse(r.body.toString()) as { sha: string; length: number; contentLength: string };
      expect(got).toMatchObject({ sha: BIG_SHA, length: BIG.length, contentLength: String(BIG.length) });
    });

    it('a 20 MB chunked upload reaches the upstream intact, still chunked', async () => {
      const body = Readable.from(
        (function* () {
          for (let i = 0; i < BIG.length; i += 100_000) yield BIG.subarray(i, i + 100_000);
        })(),
      );
      const r = await request(`${gw.url}/upload`, { method: 'POST', body });
      const got = JSON.parse(r.body.toString()) as { sha: string; length: number; te: string | null };
      expect(got).toMatchObject({ sha: BIG_SHA, length: BIG.length, te: 'chunked' });
    });

    it('a 20 MB download with Content-Length reaches the client intact', async () => {
      const r = await request(`${gw.url}/download`);
      expect(r.headers['content-length']).toBe(String(BIG.length));
      expect(r.body.length).toBe(BIG.length);
      expect(sha256(r.body)).toBe(BIG_SHA);
    });

    it('a 20 MB chunked download reaches the client intact, chunked', async () => {
      const r = await request(`${gw.url}/download-chunked`);
      expect(r.headers['transfer-encoding']).toBe('chunked');
      expect(sha256(r.body)).toBe(BIG_SHA);
    });
  });

  it('back-pressure: a client that stops reading stops the upstream, then everything arrives', async () => {
    let received = 0;
    const done = deferred<boolean>();
    const req = httpRequest(`${gw.url}/huge`, { agent: false });
    const res = await new Promise<IncomingMessage>((resolve) => req.on('response', resolve).end());
    res.pause(); // the client reads nothing more for now
    // Wait until the upstream has been blocked on 'drain' without progress for a while: with
    // back-pressure it stays blocked for good; a gateway that buffered would let it finish.
    let last = -1;
    while (!probe.finished) {
      if (probe.stalled && probe.written === last) break;
      last = probe.written;
      await new Promise((r) => setTimeout(r, 150));
    }
    expect(probe.finished).toBe(false);
    // Whatever sits in socket buffers and the gateway's stream buffers is a small part of the body.
    expect(probe.written).toBeLessThan(HUGE / 2);
    res.on('data', (c: Buffer) => (received += c.length));
    res.on('end', () => done.resolve(res.complete));
    res.resume();
    expect(await done.promise).toBe(true);
    expect(received).toBe(HUGE);
    expect(probe.finished).toBe(true);
  });

  it('back-pressure upstream: an upstream that stops reading stops the client upload', async () => {
    const UPLOAD = 60 * MB; // under limits.bodySize
    const s = await open();
    const arrived = arrival('/slow-reader');
    s.write(`PUT /slow-reader HTTP/1.1\r\nHost: x\r\nContent-Length: ${UPLOAD}\r\n\r\n`);
    const block = Buffer.alloc(256 * 1024, 0x63);
    let sent = 0;
    let blocked = false;
    const pump = () => {
      while (sent < UPLOAD) {
        sent += block.length;
        if (!s.socket.write(block)) {
          blocked = true;
          s.socket.once('drain', () => {
            blocked = false;
            pump();
          });
          return;
        }
      }
    };
    pump();
    const upstreamReq = await arrived;
    // Wait until the client has been blocked without progress for a while (see above).
    let last = -1;
    while (sent < UPLOAD) {
      if (blocked && sent === last) break;
      last = sent;
      await new Promise((r) => setTimeout(r, 150));
    }
    expect(sent).toBeLessThan(UPLOAD / 2);
    upstreamReq.resume();
    const res = parseResponse(await s.waitFor((t) => parseResponse(t) !== null))!;
    expect(res.status).toBe(200);
    expect(res.body).toBe(String(UPLOAD));
  });

  it('response chunks reach the client before the upstream finishes', async () => {
    const req = httpRequest(`${gw.url}/held`, { agent: false });
    const res = await new Promise<IncomingMessage>((resolve) => req.on('response', resolve).end());
    res.setEncoding('utf8');
    const first = await new Promise<string>((resolve) => res.once('data', resolve));
    expect(first).toBe('first;');
    expect(res.headers['transfer-encoding']).toBe('chunked');
    let rest = '';
    res.on('data', (c: string) => (rest += c));
    const ended = new Promise((resolve) => res.on('end', resolve));
    pending.get('/held')?.end('second');
    await ended;
    expect(rest).toBe('second');
    expect(res.complete).toBe(true);
  });

  it('request chunks reach the upstream before the client finishes the upload', async () => {
    const s = await open();
    s.write('POST /upload-stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
    await s.waitFor('got:hello;'); // the upstream answered about chunk 1 while the upload is open
    s.write('5\r\nworld\r\n0\r\n\r\n');
    const text = await s.waitFor((t) => parseResponse(t) !== null);
    expect(parseResponse(text)?.body).toBe('got:hello;got:world;end');
  });

  describe('responses without a body', () => {
    /** Two requests on one connection: the second proves the first was framed right. */
    async function thenEcho(first: string, opts: { noBody?: boolean } = {}) {
      const s = await open();
      s.write(first);
      const text = await s.waitFor((t) => parseResponse(t, opts) !== null);
      const res = parseResponse(text, opts)!;
      expect(res.rest).toBe('');
      s.take();
      s.write('GET /echo-after HTTP/1.1\r\nHost: x\r\n\r\n');
      const second = parseResponse(await s.waitFor((t) => parseResponse(t) !== null))!;
      expect(second.status).toBe(200);
      expect((JSON.parse(second.body) as { url: string }).url).toBe('/echo-after');
      expect(second.rest).toBe('');
      return res;
    }

    it('HEAD: headers only (Content-Length kept), and the connection stays usable', async () => {
      const res = await thenEcho('HEAD /head HTTP/1.1\r\nHost: x\r\n\r\n', { noBody: true });
      expect(res.status).toBe(200);
      expect(res.headers['content-length']).toBe('5000');
      expect(res.headers['x-request-id']).toBeDefined();
    });

    it('HEAD to a chunked resource: headers only, connection usable', async () => {
      const res = await thenEcho('HEAD /head-chunked HTTP/1.1\r\nHost: x\r\n\r\n', { noBody: true });
      expect(res.status).toBe(200);
    });

    it('204: no body, connection usable', async () => {
      const res = await thenEcho('DELETE /204 HTTP/1.1\r\nHost: x\r\n\r\n');
      expect(res.status).toBe(204);
      expect(res.headers['x-kind']).toBe('no-content');
      expect(res.headers['transfer-encoding']).toBeUndefined();
      expect(res.headers['content-length']).toBeUndefined();
    });

    it('304: no body, validators kept, connection usable', async () => {
      const res = await thenEcho('GET /304 HTTP/1.1\r\nHost: x\r\nIf-None-Match: "v1"\r\n\r\n');
      expect(res.status).toBe(304);
      expect(res.headers.etag).toBe('"v1"');
      expect(res.headers['transfer-encoding']).toBeUndefined();
      expect(upstream.received.at(-2)?.headers['if-none-match']).toBe('"v1"');
    });

    it('304 with a Content-Length: still no body, connection usable', async () => {
      const res = await thenEcho('GET /304-with-length HTTP/1.1\r\nHost: x\r\n\r\n');
      expect(res.status).toBe(304);
    });
  });

  describe('Expect: 100-continue', () => {
    it('the client gets 100 Continue, sends the body, then gets the final response', async () => {
      const s = await open();
      s.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
      await s.waitFor('\r\n\r\n');
      expect(s.take()).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\n$/);
      s.write('hello');
      const res = parseResponse(await s.waitFor((t) => parseResponse(t) !== null))!;
      expect(res.status).toBe(200);
      const body = JSON.parse(res.body) as { body: string; headers: Record<string, string> };
      expect(body.body).toBe('hello');
      expect(body.headers.expect).toBeUndefined();
    });

    it('works with a node:http client', async () => {
      const req = httpRequest(`${gw.url}/echo`, {
        method: 'PUT',
        agent: false,
        headers: { expect: '100-continue', 'content-length': '3' },
      });
      const continued = new Promise<void>((resolve) => req.on('continue', resolve));
      const response = new Promise<IncomingMessage>((resolve) => req.on('response', resolve));
      req.flushHeaders();
      await continued;
      req.end('abc');
      const res = await response;
      let text = '';
      for await (const c of res) text += (c as Buffer).toString();
      expect(res.statusCode).toBe(200);
      expect((JSON.parse(text) as { body: string }).body).toBe('abc');
    });

    it('a Content-Length over the limit gets 413 instead of 100, and no body is asked for', async () => {
      const before = upstream.received.length;
      const s = await open();
      s.write(`POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: ${65 * MB}\r\nExpect: 100-continue\r\n\r\n`);
      const res = parseResponse(await s.waitFor((t) => parseResponse(t) !== null))!;
      expect(s.received).not.toContain('100 Continue');
      expectProblem({ status: res.status, headers: res.headers, body: res.body }, 413, 'body_too_large');
      expect(res.headers.connection).toBe('close');
      await s.waitClosed();
      expect(upstream.received.length).toBe(before);
    });

    it('an unknown route gets 404 instead of 100', async () => {
      const s = await open();
      const gw404 = await startGateway(`
services:
  svc: { targets: ["${upstream.url}"] }
routes:
  - { name: only, match: { path: /only }, service: svc }
`);
      try {
        const s2 = await RawSession.open(gw404.gateway.port);
        sessions.push(s2);
        s2.write('POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n');
        const res = parseResponse(await s2.waitFor((t) => parseResponse(t) !== null))!;
        expect(s2.received).not.toContain('100 Continue');
        expectProblem({ status: res.status, headers: res.headers, body: res.body }, 404, 'no_route');
      } finally {
        s.destroy();
        await gw404.close();
      }
    });
  });
});
