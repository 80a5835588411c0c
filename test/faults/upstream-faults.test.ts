/**
 * Upstreams that misbehave, scripted: refuse, hang, reset before or during the response, send
 * garbage, are slow. The client always gets a clear answer: a coded problem+json while the
 * status line is not sent yet, a visibly cut response after that; never a hang or a crash.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { expectProblem, request } from '../helpers/http-client.js';
import { closedPort, startRawUpstream, startUpstream, type Upstream } from '../helpers/upstream.js';

type Raw = Awaited<ReturnType<typeof startRawUpstream>>;

/** Calls `fn` each time a request head (no body expected) has arrived on a raw upstream socket. */
const onRequestHead = (fn: (socket: Socket) => void) => (socket: Socket) => {
  let head = '';
  socket.on('data', (d: Buffer) => {
    head += d.toString('latin1');
    if (head.includes('\r\n\r\n')) {
      head = '';
      fn(socket);
    }
  });
};

/** Counts the connections a raw upstream accepts (in `connections.count`). */
const connections = { count: 0 };
const countConnections = (fn: (socket: Socket) => void) => (socket: Socket) => {
  connections.count++;
  fn(socket);
};

/** Outcome of a request whose response may be cut: status, what arrived, and how it ended. */
type Outcome = { status: number; body: string; complete: boolean; error: string | null };

function fetchOutcome(url: string): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent: false });
    req.on('error', reject);
    req.on('response', (res: IncomingMessage) => {
      let body = '';
      let error: string | null = null;
      res.setEncoding('latin1');
      res.on('data', (c: string) => (body += c));
      res.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
      res.on('close', () => resolve({ status: res.statusCode ?? 0, body, complete: res.complete, error }));
    });
    req.end();
  });
}

describe('upstream faults', () => {
  const raws: Raw[] = [];
  let slow: Upstream;
  let gw: TestGateway;
  const raw = async (fn: (socket: Socket) => void) => {
    const r = await startRawUpstream(fn);
    raws.push(r);
    return r.url;
  };

  beforeAll(async () => {
    const refused = `http://127.0.0.1:${await closedPort()}`;
    const hang = await raw(() => undefined);
    const resetEarly = await raw(onRequestHead((s) => s.resetAndDestroy()));
    const closeEarly = await raw(onRequestHead((s) => s.end()));
    const resetMidBody = await raw(
      onRequestHead((s) => {
        s.write('HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n' + 'a'.repeat(1000), () =>
          s.resetAndDestroy(),
        );
      }),
    );
    const closeMidBody = await raw(
      onRequestHead((s) => {
        s.end('HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n' + 'a'.repeat(1000));
      }),
    );
    const resetMidChunked = await raw(
      onRequestHead((s) => {
        s.write('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n', () =>
          s.resetAndDestroy(),
        );
      }),
    );
    const stallMidBody = await raw(
      onRequestHead((s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n' + 'a'.repeat(10))),
    );
    const garbage = await raw(onRequestHead((s) => s.end('SSH-2.0-OpenSSH_9.6\r\n\r\n')));
    const badHeader = await raw(
      onRequestHead((s) => s.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nno colon here\r\n\r\nok')),
    );
    const badChunk = await raw(
      onRequestHead((s) =>
        s.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nxx\r\n0\r\n\r\n'),
      ),
    );
    const doubleLength = await raw(
      onRequestHead((s) =>
        s.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 20\r\n\r\nok' + 'x'.repeat(18)),
      ),
    );
    const earlyHints = await raw(
      onRequestHead((s) =>
        s.write(
          'HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n' +
            'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Final: yes\r\n\r\nfinal',
        ),
      ),
    );
    const final = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Final: yes\r\n\r\nfinal';
    const continueFirst = await raw(
      countConnections(onRequestHead((s) => s.write('HTTP/1.1 100 Continue\r\n\r\n' + final))),
    );
    const continueSplit = await raw(
      onRequestHead((s) => {
        // one 100 cut in the middle of its status line, then a second one with a header field
        s.write('HTTP/1.1 10');
        setTimeout(() => s.write('0 Continue\r\nX-Note: a\r\n\r\nHTTP/1.1 100 Continue\r\n'), 20);
        setTimeout(() => s.write('\r\n' + final), 40);
      }),
    );
    const processing = await raw(onRequestHead((s) => s.write('HTTP/1.1 102 Processing\r\n\r\n' + final)));
    const hintsThenContinue = await raw(
      onRequestHead((s) =>
        s.write(
          'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n' +
            'HTTP/1.1 100 Continue\r\n\r\n' +
            final,
        ),
      ),
    );
    const badChunkFirst = await raw(
      onRequestHead((s) =>
        s.end('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n'),
      ),
    );
    const stallBeforeBody = await raw(
      onRequestHead((s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n')),
    );
    slow = await startUpstream((req, res) => {
      if (req.url === '/slow-body') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        let n = 0;
        const tick = setInterval(() => {
          if (res.destroyed) return clearInterval(tick);
          res.write(`chunk${n};`);
          if (++n === 5) {
            clearInterval(tick);
            res.end();
          }
        }, 30);
        return;
      }
      setTimeout(() => res.end('late but fine'), 80);
    });
    const svc = (url: string) => `{ targets: ["${url}"], timeouts: { connect: 500ms, response: 300ms } }`;
    const services: Record<string, string> = {
      refused,
      hang,
      resetEarly,
      closeEarly,
      resetMidBody,
      closeMidBody,
      resetMidChunked,
      stallMidBody,
      garbage,
      badHeader,
      badChunk,
      doubleLength,
      earlyHints,
      continueFirst,
      continueSplit,
      processing,
      hintsThenContinue,
      badChunkFirst,
      stallBeforeBody,
      slow: slow.url,
    };
    gw = await startGateway(`
services:
${Object.entries(services)
  .map(([name, url]) => `  ${name}: ${svc(url)}`)
  .join('\n')}
routes:
${Object.keys(services)
  .map(
    (name) => `  - { name: ${name}, match: { path: /${name}/** }, service: ${name}, stripPrefix: /${name} }`,
  )
  .join('\n')}
`);
  });

  afterAll(async () => {
    await gw.close();
    await Promise.all(raws.map((r) => r.close()));
    await slow.close();
  });

  const get = (path: string) => request(`${gw.url}${path}`);

  it('connection refused → 502 upstream_error', async () => {
    expectProblem(await get('/refused/x'), 502, 'upstream_error');
  });

  it('an upstream that accepts but never answers → 504 upstream_timeout', async () => {
    const r = await get('/hang/x');
    const p = expectProblem(r, 504, 'upstream_timeout');
    expect(p.detail).toContain('hang');
  });

  it('a reset before the response → 502 upstream_error', async () => {
    expectProblem(await get('/resetEarly/x'), 502, 'upstream_error');
  });

  it('a close before the response → 502 upstream_error', async () => {
    expectProblem(await get('/closeEarly/x'), 502, 'upstream_error');
  });

  it('garbage instead of HTTP → 502 upstream_error', async () => {
    expectProblem(await get('/garbage/x'), 502, 'upstream_error');
  });

  it('an invalid header line → 502 upstream_error', async () => {
    expectProblem(await get('/badHeader/x'), 502, 'upstream_error');
  });

  it('conflicting Content-Length headers in the response → 502 upstream_error', async () => {
    expectProblem(await get('/doubleLength/x'), 502, 'upstream_error');
  });

  it.each([
    ['a reset mid-body (Content-Length)', '/resetMidBody/x'],
    ['a close mid-body (Content-Length)', '/closeMidBody/x'],
    ['a reset mid-body (chunked)', '/resetMidChunked/x'],
    ['a stall mid-body past the response timeout', '/stallMidBody/x'],
    ['an invalid chunk size mid-body', '/badChunk/x'],
  ])('%s → the client sees a cut response, never a complete one', async (_what, path) => {
    const o = await fetchOutcome(`${gw.url}${path}`);
    expect(o.status).toBe(200);
    expect(o.complete).toBe(false);
  });

  it('an informational 103 before the final response → the hints, then the final response', async () => {
    const r = await get('/earlyHints/x');
    expect(r.status).toBe(200);
    expect(r.headers['x-final']).toBe('yes');
    expect(r.body.toString()).toBe('final');
    const hints = await new Promise<{ statusCode: number; headers: Record<string, unknown> }>(
      (resolve, reject) => {
        const req = httpRequest(`${gw.url}/earlyHints/y`, { agent: false });
        req.on('information', resolve);
        req.on('error', reject);
        req.on('response', (res) => res.resume());
        req.end();
      },
    );
    expect(hints.statusCode).toBe(103);
    expect(hints.headers.link).toBe('</style.css>; rel=preload');
  });

  describe('unsolicited 1xx answers before the final response are dropped', () => {
    it('100 Continue: the final response, on a connection that stays usable', async () => {
      const before = connections.count;
      for (const method of ['GET', 'POST', 'GET']) {
        const r = await request(`${gw.url}/continueFirst/x`, {
          method,
          body: method === 'POST' ? 'data' : '',
        });
        expect(r.status).toBe(200);
        expect(r.headers['x-final']).toBe('yes');
        expect(r.body.toString()).toBe('final');
      }
      // the three exchanges shared one kept-alive upstream connection
      expect(connections.count - before).toBe(1);
    });

    it('100 Continue arriving in pieces, twice, with a header field: the final response', async () => {
      const r = await get('/continueSplit/x');
      expect(r.status).toBe(200);
      expect(r.body.toString()).toBe('final');
    });

    it('102 Processing: the final response', async () => {
      const r = await get('/processing/x');
      expect(r.status).toBe(200);
      expect(r.body.toString()).toBe('final');
    });

    it('103 Early Hints, then 100 Continue: the hints, then the final response', async () => {
      const hints: unknown[] = [];
      const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = httpRequest(`${gw.url}/hintsThenContinue/x`, { agent: false });
        req.on('information', (info: { statusCode: number; headers: Record<string, unknown> }) =>
          hints.push([info.statusCode, info.headers.link]),
        );
        req.on('error', reject);
        req.on('response', (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.end();
      });
      expect(hints).toEqual([[103, '</a.css>; rel=preload']]);
      expect(r).toEqual({ status: 200, body: 'final' });
    });
  });

  describe('a body that fails before its first byte: nothing was sent yet, so a clean answer', () => {
    it('an invalid chunk size at the start of the body → 502 upstream_error', async () => {
      const p = expectProblem(await get('/badChunkFirst/x'), 502, 'upstream_error');
      expect(p.detail).toContain('invalid response');
    });

    it('headers, then no body byte within the response timeout → 504 upstream_timeout', async () => {
      expectProblem(await get('/stallBeforeBody/x'), 504, 'upstream_timeout');
    });
  });

  it('a slow upstream within the timeout → 200', async () => {
    const r = await get('/slow/x');
    expect(r.status).toBe(200);
    expect(r.body.toString()).toBe('late but fine');
  });

  it('a slowly streamed body, each pause within the timeout → complete', async () => {
    const r = await get('/slow/slow-body');
    expect(r.body.toString()).toBe('chunk0;chunk1;chunk2;chunk3;chunk4;');
  });

  it('the gateway still serves normally after all that', async () => {
    const rs = await Promise.all([get('/slow/a'), get('/slow/b'), get('/refused/c')]);
    expect(rs.map((r) => r.status)).toEqual([200, 200, 502]);
  });
});
