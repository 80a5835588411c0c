/**
 * Clients that vanish: while the upstream is thinking, mid-response, mid-upload, while the
 * gateway waits on back-pressure. The upstream exchange is aborted each time (the upstream sees
 * its request closed), the gateway keeps serving others, and no connection is leaked.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { connectionCount, dataServer, deferred, request } from '../helpers/http-client.js';
import { RawSession } from '../helpers/raw-session.js';
import { echo, startUpstream, type Upstream } from '../helpers/upstream.js';

type Seen = {
  req: IncomingMessage;
  res: ServerResponse;
  /** resolves when the upstream's request is closed; true when its response had finished */
  closed: Promise<boolean>;
  /** resolves when the request body ended (never, for an aborted upload) */
  bodyEnded: boolean;
  bodyBytes: number;
};

describe('clients that go away', () => {
  let upstream: Upstream;
  let gw: TestGateway;
  const arrivals = new Map<string, ReturnType<typeof deferred<Seen>>>();
  const expectArrival = (path: string) => {
    const d = deferred<Seen>();
    arrivals.set(path, d);
    return d.promise;
  };
  const POOL = 8;

  beforeAll(async () => {
    upstream = await startUpstream((req, res) => {
      const path = req.url ?? '';
      const closed = new Promise<boolean>((resolve) => res.on('close', () => resolve(res.writableFinished)));
      const seen: Seen = { req, res, closed, bodyEnded: false, bodyBytes: 0 };
      req.on('data', (c: Buffer) => (seen.bodyBytes += c.length));
      req.on('end', () => (seen.bodyEnded = true));
      arrivals.get(path)?.resolve(seen);
      switch (path) {
        case '/think':
          return; // never answers
        case '/partial':
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.write('part one;');
          return; // never finishes
        case '/upload':
          return; // reads the body, never answers
        case '/flood': {
          res.writeHead(200, { 'content-length': 64 * 1024 * 1024 });
          const block = Buffer.alloc(256 * 1024, 0x62);
          const pump = () => {
            while (!res.destroyed && res.write(block));
            if (!res.destroyed) res.once('drain', pump);
          };
          pump();
          return;
        }
        default:
          echo(req, res, 0);
      }
    });
    // A long response timeout: only the gateway noticing the client is gone can end these
    // upstream exchanges within the test's time.
    gw = await startGateway(`
services:
  svc: { targets: ["${upstream.url}"], timeouts: { response: 60s }, pool: { connections: ${POOL} } }
routes:
  - { name: all, match: { path: /** }, service: svc }
`);
  });
  afterAll(async () => {
    await gw.close();
    await upstream.close();
  });

  const stillServing = async () => {
    const r = await request(`${gw.url}/ok`);
    expect(r.status).toBe(200);
    expect((JSON.parse(r.body.toString()) as { url: string }).url).toBe('/ok');
  };

  it('while the upstream is still thinking: the upstream request is aborted', async () => {
    const arrived = expectArrival('/think');
    const s = await RawSession.open(gw.gateway.port);
    s.write('GET /think HTTP/1.1\r\nHost: x\r\n\r\n');
    const seen = await arrived;
    s.destroy();
    expect(await seen.closed).toBe(false);
    await stillServing();
  });

  it('mid-response: the upstream response is cut off', async () => {
    const arrived = expectArrival('/partial');
    const s = await RawSession.open(gw.gateway.port);
    s.write('GET /partial HTTP/1.1\r\nHost: x\r\n\r\n');
    const seen = await arrived;
    await s.waitFor('part one;');
    s.destroy();
    expect(await seen.closed).toBe(false);
    await stillServing();
  });

  it('mid-upload: the upstream request body is aborted, never ended', async () => {
    const arrived = expectArrival('/upload');
    const s = await RawSession.open(gw.gateway.port);
    s.write('POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n' + 'u'.repeat(1000));
    const seen = await arrived;
    await vi.waitFor(() => expect(seen.bodyBytes).toBe(1000));
    s.destroy();
    expect(await seen.closed).toBe(false);
    expect(seen.bodyEnded).toBe(false);
    await stillServing();
  });

  it('mid-upload of a chunked body: the same', async () => {
    const arrived = expectArrival('/upload');
    const s = await RawSession.open(gw.gateway.port);
    s.write('POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n');
    const seen = await arrived;
    await vi.waitFor(() => expect(seen.bodyBytes).toBe(5));
    s.destroy();
    expect(await seen.closed).toBe(false);
    expect(seen.bodyEnded).toBe(false);
    await stillServing();
  });

  it('while the gateway waits on a client that stopped reading: the upstream response is cut off', async () => {
    const arrived = expectArrival('/flood');
    const s = await RawSession.open(gw.gateway.port);
    s.socket.pause(); // read nothing: the gateway's writes to this client back up
    s.write('GET /flood HTTP/1.1\r\nHost: x\r\n\r\n');
    const seen = await arrived;
    await vi.waitFor(() => expect(seen.res.writableNeedDrain).toBe(true));
    s.destroy();
    expect(await seen.closed).toBe(false);
    await stillServing();
  });

  it('a vanished client does not hold up others in flight at the same time', async () => {
    const arrived = expectArrival('/think');
    const s = await RawSession.open(gw.gateway.port);
    s.write('GET /think HTTP/1.1\r\nHost: x\r\n\r\n');
    const seen = await arrived;
    await stillServing(); // while /think holds one pooled connection
    s.destroy();
    await seen.closed;
  });

  it('leaves no connection behind on either side', async () => {
    await vi.waitFor(async () => expect(await connectionCount(dataServer(gw))).toBe(0));
    // Every aborted exchange closed its upstream connection: only the one idle keep-alive
    // connection the plain requests used is left (of up to POOL).
    await vi.waitFor(async () => expect(await connectionCount(upstream.server)).toBeLessThanOrEqual(1));
    await stillServing();
  });
});
