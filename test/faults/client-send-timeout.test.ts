/**
 * `limits.sendTimeout`: a client that stops reading its response must not hold an upstream
 * connection for as long as it stays connected. With two pooled connections and two clients
 * that never read an 8 MiB response, every other request used to wait for a connection until it
 * timed out (504). Now the two are cut once they have taken nothing for `sendTimeout`, their
 * upstream exchanges are aborted, and the next request gets one of the freed connections. A
 * client that reads slowly but steadily is not cut, however long its whole response takes.
 */
import type { ServerResponse } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { connectionCount, request } from '../helpers/http-client.js';
import { expectNoClientConnections, waitFor } from '../helpers/observe.js';
import { RawSession } from '../helpers/raw-session.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const MiB = 1024 * 1024;

/** `/big/<MiB>` streams that many MiB (with Content-Length, respecting back-pressure); else `ok`. */
function bigUpstream(closed: Array<{ path: string; finished: boolean }>) {
  return startUpstream((req, res: ServerResponse) => {
    req.resume();
    const path = req.url ?? '';
    const m = /^\/big\/(\d+)$/.exec(path);
    if (m === null) {
      res.end('ok');
      return;
    }
    res.on('close', () => closed.push({ path, finished: res.writableFinished }));
    let left = Number(m[1]) * MiB;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': left });
    const block = Buffer.alloc(64 * 1024, 0x61);
    const pump = () => {
      while (left > 0 && !res.destroyed) {
        left -= block.length;
        const more = left > 0 ? res.write(block) : (res.end(block), false);
        if (!more) break;
      }
      if (left > 0 && !res.destroyed) res.once('drain', pump);
    };
    pump();
  });
}

/** A raw client that sends a GET and never reads a byte of the answer. */
async function nonReader(port: number, path: string): Promise<RawSession> {
  const s = await RawSession.open(port);
  s.socket.pause();
  s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
  return s;
}

describe('a client that stops reading is cut after limits.sendTimeout', () => {
  let up: Upstream;
  let gw: TestGateway;
  const closed: Array<{ path: string; finished: boolean }> = [];

  beforeAll(async () => {
    up = await bigUpstream(closed);
    // retries off: the cut exchanges must not be replaced by new ones
    gw = await startGateway(`
limits: { sendTimeout: 300ms }
services:
  svc:
    targets: ["${up.url}"]
    pool: { connections: 2 }
    timeouts: { response: 4s }
    retry: { attempts: 1 }
routes:
  - { name: all, match: { path: /** }, service: svc }
`);
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });

  it('two clients that never read free both pooled connections: the next request gets 200', async () => {
    const clients = [await nonReader(gw.gateway.port, '/big/8'), await nonReader(gw.gateway.port, '/big/8')];
    try {
      await waitFor(() => up.received.filter((r) => r.url === '/big/8').length === 2, 'both big requests');
      // both connections of the pool are taken; this one waits for one of them
      const start = performance.now();
      const r = await request(`${gw.url}/small`);
      expect(r.status).toBe(200);
      expect(r.body.toString()).toBe('ok');
      expect(performance.now() - start).toBeLessThan(3000); // well before the 4 s queue timeout
      // both upstream connections of the big exchanges were closed (aborted, not kept alive):
      // only the one the small request used may be left
      await waitFor(async () => (await connectionCount(up.server)) <= 1, 'the big exchanges to be aborted');
      // the gateway closed the two clients' connections itself: they are still open on this side
      expect(clients.every((c) => !c.socket.destroyed)).toBe(true);
      await expectNoClientConnections(gw);
    } finally {
      for (const c of clients) c.destroy();
    }
  });
});

describe('a client that reads slowly but steadily is not cut', () => {
  let up: Upstream;
  let gw: TestGateway;
  const closed: Array<{ path: string; finished: boolean }> = [];
  const SEND_TIMEOUT = 1000;

  beforeAll(async () => {
    up = await bigUpstream(closed);
    gw = await startGateway(`
limits: { sendTimeout: ${SEND_TIMEOUT}ms }
services:
  svc: { targets: ["${up.url}"], timeouts: { response: 4s } }
routes:
  - { name: all, match: { path: /** }, service: svc }
`);
  });
  afterAll(async () => {
    await gw.close();
    await up.close();
  });

  it('the whole response arrives, though it takes many times sendTimeout', async () => {
    const s = await RawSession.open(gw.gateway.port);
    try {
      s.socket.pause();
      s.write('GET /big/4 HTTP/1.1\r\nHost: x\r\n\r\n');
      const start = performance.now();
      // take 64 KiB every 50 ms (~1.3 MB/s): each wait for progress stays far below sendTimeout
      const bodyBytes = () => {
        const head = s.received.indexOf('\r\n\r\n');
        return head === -1 ? 0 : s.received.length - head - 4;
      };
      while (bodyBytes() < 4 * MiB && !s.closed) {
        await new Promise((r) => setTimeout(r, 50));
        // read() hands the chunk to RawSession's 'data' listener, which keeps it in `received`;
        // with a size it returns null until that much is there (or the stream has ended)
        if (s.socket.read(64 * 1024) === null) s.socket.read();
      }
      const ms = performance.now() - start;
      expect(s.closed).toBe(false);
      expect(s.received).toMatch(/^HTTP\/1\.1 200 /);
      expect(bodyBytes()).toBe(4 * MiB);
      expect(ms).toBeGreaterThan(2 * SEND_TIMEOUT); // a limit on the whole response would have cut it
      await waitFor(() => closed.length === 1, 'the upstream response to close');
      expect(closed).toEqual([{ path: '/big/4', finished: true }]);
    } finally {
      s.destroy();
    }
  });
});
