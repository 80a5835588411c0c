/**
 * Slow and vanishing clients against the real gateway: slowloris headers, slow bodies, silent
 * connections, clients that disappear mid-headers, mid-body and mid-response. Each ends in a
 * 408 problem+json or a closed connection; the gateway keeps serving; no socket is left open,
 * and an upload cut short never reaches the upstream as a complete request.
 *
 * node enforces headersTimeout/requestTimeout from a periodic check (connectionsCheckingInterval);
 * the data plane derives that interval from limits.headersTimeout, so small limits act quickly.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { exchange, noConnectionsLeft, parseResponses, RawClient, settled } from '../helpers/hostile.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

type Seen = { req: IncomingMessage; res: ServerResponse; outcome: Promise<'complete' | 'aborted'> };

let upstream: Upstream;
let seen: Seen[];
let onSeen: Array<(s: Seen) => void>;
let gw: TestGateway;
let port: number;

/** The next request the upstream sees. */
const nextUpstreamRequest = () => new Promise<Seen>((resolve) => onSeen.push(resolve));

beforeAll(async () => {
  seen = [];
  onSeen = [];
  upstream = await startUpstream((req, res) => {
    const s: Seen = { req, res, outcome: settled(req) };
    seen.push(s);
    for (const fn of onSeen.splice(0)) fn(s);
    if (req.url === '/stream') {
      // a response that never ends on its own: one chunk, then silence
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first chunk\n');
      return;
    }
    void s.outcome.then((outcome) => {
      if (outcome === 'complete' && !res.destroyed) res.end('ok');
    });
  });
  gw = await startGateway(`
limits: { headersTimeout: 300ms, requestTimeout: 600ms, keepAliveTimeout: 200ms }
services:
  echo: { targets: ["${upstream.url}"], timeouts: { response: 5s } }
routes:
  - { name: all, match: { path: /** }, service: echo }
`);
  port = gw.gateway.port;
});

afterAll(async () => {
  await gw.close();
  await upstream.close();
});

afterEach(async () => {
  // nothing left open on the gateway, and it still answers
  await noConnectionsLeft(gw);
  const alive = await exchange(port, 'GET /alive HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n');
  expect(alive.responses.map((r) => r.status)).toEqual([200]);
  await noConnectionsLeft(gw);
  seen.length = 0;
});

function expect408(received: string): void {
  const responses = parseResponses(received);
  expect(responses).toHaveLength(1);
  expect(responses[0]?.status).toBe(408);
  expect(responses[0]?.headers['content-type']).toBe('application/problem+json');
  expect(JSON.parse(responses[0]?.body ?? '')).toMatchObject({ code: 'request_timeout', status: 408 });
}

describe('slow clients are cut off', () => {
  it('slowloris: headers sent a byte at a time past headersTimeout get a 408 and a close', async () => {
    const client = await RawClient.open(port);
    const headers = `GET /slow HTTP/1.1\r\nHost: gw.test\r\nX-Pad: ${'p'.repeat(500)}\r\n\r\n`;
    // 50 ms a byte: the whole header would take ~27 s, the gateway gives up after ~300 ms
    const written = await client.trickle(headers, 1, 50);
    expect(client.closed).toBe(true);
    expect(written).toBeLessThan(headers.length);
    expect408(client.received);
    client.destroy();
    expect(seen).toHaveLength(0);
  });

  it('a connection that never sends a byte is closed with a 408', async () => {
    const client = await RawClient.open(port);
    await client.waitClosed();
    expect408(client.received);
    client.destroy();
  });

  it('a request line cut off half way is closed with a 408', async () => {
    const client = await RawClient.open(port);
    client.write('GET /half');
    await client.waitClosed();
    expect408(client.received);
    client.destroy();
    expect(seen).toHaveLength(0);
  });

  it.each([
    ['Content-Length', 'Content-Length: 1000\r\n', 'y'],
    ['chunked', 'Transfer-Encoding: chunked\r\n', '1\r\ny\r\n'],
  ])(
    'a %s body sent slower than requestTimeout: 408, and the upload is aborted upstream',
    async (_n, header, piece) => {
      const client = await RawClient.open(port);
      const upstreamRequest = nextUpstreamRequest();
      client.write(`POST /upload HTTP/1.1\r\nHost: gw.test\r\n${header}\r\n`);
      await client.trickle(piece.repeat(1000), piece.length, 50);
      expect(client.closed).toBe(true);
      expect408(client.received);
      client.destroy();
      // the upstream got the headers (bodies stream), but never a complete request
      const got = await upstreamRequest;
      expect(await got.outcome).toBe('aborted');
    },
  );

  it('a client that keeps its half open after the 408 still loses the connection', async () => {
    const client = await RawClient.open(port, { allowHalfOpen: true });
    client.write('GET /half');
    await client.until((r) => r.includes('"request_timeout"'));
    expect408(client.received);
    // we never end our side; the gateway must not keep its socket for us
    await noConnectionsLeft(gw);
    client.destroy();
  });

  it('a client that keeps its half open after a 400 still loses the connection', async () => {
    const client = await RawClient.open(port, { allowHalfOpen: true });
    client.write('GET /x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5a\r\n\r\n');
    await client.until((r) => r.includes('"bad_request"'));
    await noConnectionsLeft(gw);
    client.destroy();
  });
});

describe('clients that vanish', () => {
  it('mid-headers: the gateway forgets the connection, the upstream sees nothing', async () => {
    const client = await RawClient.open(port);
    client.write('GET /gone HTTP/1.1\r\nHost: gw.te');
    await new Promise((resolve) => setImmediate(resolve));
    client.destroy();
    await noConnectionsLeft(gw);
    expect(seen).toHaveLength(0);
  });

  it.each([
    ['Content-Length', 'Content-Length: 100\r\n', 'only part of it'],
    ['chunked', 'Transfer-Encoding: chunked\r\n', '5\r\nhello\r\n'],
  ])('mid-body (%s): the upload is aborted upstream, never completed', async (_n, header, part) => {
    const client = await RawClient.open(port);
    const upstreamRequest = nextUpstreamRequest();
    client.write(`POST /upload HTTP/1.1\r\nHost: gw.test\r\n${header}\r\n${part}`);
    const got = await upstreamRequest;
    client.destroy();
    expect(await got.outcome).toBe('aborted');
  });

  it('mid-response: the upstream exchange is cut, nothing stays open', async () => {
    const client = await RawClient.open(port);
    const upstreamRequest = nextUpstreamRequest();
    client.write('GET /stream HTTP/1.1\r\nHost: gw.test\r\n\r\n');
    const got = await upstreamRequest;
    await client.until((r) => r.includes('first chunk'));
    const upstreamClosed = new Promise<void>((resolve) => got.res.once('close', () => resolve()));
    client.destroy();
    // the gateway aborts its upstream request, so the upstream's response is closed unfinished
    await upstreamClosed;
    expect(got.res.writableFinished).toBe(false);
  });

  it('many at once: the gateway keeps serving, with no socket left behind', async () => {
    const clients = await Promise.all(Array.from({ length: 20 }, () => RawClient.open(port)));
    clients.forEach((c, i) => {
      if (i % 3 === 0) c.write('GET /x HTTP/1.1\r\nHo');
      else if (i % 3 === 1) c.write('POST /x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 50\r\n\r\nabc');
      else c.write('GET /stream HTTP/1.1\r\nHost: gw.test\r\n\r\n');
    });
    await Promise.all(
      clients.map((c, i) => (i % 3 === 2 ? c.until((r) => r.includes('first chunk')) : Promise.resolve())),
    );
    for (const c of clients) c.destroy();
    await noConnectionsLeft(gw);
  });
});
