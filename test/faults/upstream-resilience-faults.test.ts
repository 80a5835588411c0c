/**
 * Upstream faults against a gateway with the resilience layer on (retries, breaker, passive
 * health at their defaults unless a test says otherwise). Each test starts its own gateway and
 * upstream, and asserts the client's status and problem code, a generous time bound, that the
 * gateway still serves another route afterwards (no crash), that no client connection is left
 * on the proxy port, and that once everything is closed no socket or timer is left behind.
 *
 * Time bounds allow for undici's coarse timers: response timeouts fire on a ~0.5 s tick, so a
 * 300 ms timeout answers within about 300–1300 ms.
 */
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { expectProblem, request } from '../helpers/http-client.js';
import {
  expectNoClientConnections,
  expectNoLeaks,
  metric,
  baseline,
  type ResourceCounts,
} from '../helpers/observe.js';
import { closedPort, startRawUpstream, startUpstream } from '../helpers/upstream.js';

type Closable = { close(): Promise<void> };

/** Calls `fn` once a request head has arrived on a raw upstream socket. */
const onRequestHead = (fn: (socket: Socket) => void) => (socket: Socket) => {
  let head = '';
  const onData = (d: Buffer) => {
    head += d.toString('latin1');
    if (head.includes('\r\n\r\n')) {
      socket.off('data', onData);
      socket.resume(); // keep reading (and dropping) whatever else comes
      fn(socket);
    }
  };
  socket.on('data', onData);
};

/** Outcome of a request whose response may be cut: status, what arrived, and whether it was whole. */
type Outcome = { status: number; body: string; complete: boolean; ms: number };

function fetchOutcome(url: string): Promise<Outcome> {
  const start = performance.now();
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { agent: false });
    req.on('error', reject);
    req.on('response', (res: IncomingMessage) => {
      let body = '';
      res.setEncoding('latin1');
      res.on('data', (c: string) => (body += c));
      res.on('error', () => undefined);
      res.on('close', () =>
        resolve({ status: res.statusCode ?? 0, body, complete: res.complete, ms: performance.now() - start }),
      );
    });
    req.end();
  });
}

/** A request and how long it took. */
async function timed(url: string) {
  const start = performance.now();
  const reply = await request(url);
  return { reply, ms: performance.now() - start };
}

/**
 * Runs `body` against a fresh gateway whose service `svc` (route `/svc/**`) has `service` as its
 * YAML, plus a healthy service `ok` (route `/ok/**`); then checks the gateway still serves `ok`,
 * closes everything and checks nothing leaked.
 */
async function scenario(
  service: string,
  upstreams: Closable[],
  body: (gw: TestGateway) => Promise<void>,
  before: ResourceCounts,
): Promise<void> {
  const healthy = await startUpstream((_req, res: ServerResponse) => res.end('fine'));
  let gw: TestGateway | null = null;
  try {
    gw = await startGateway(`
services:
  svc: ${service}
  ok: { targets: ["${healthy.url}"] }
routes:
  - { name: svc, match: { path: /svc/** }, service: svc }
  - { name: ok, match: { path: /ok/** }, service: ok }
`);
    await body(gw);
    // no crash: the gateway still serves
    const ok = await request(`${gw.url}/ok/x`);
    expect(ok.status).toBe(200);
    expect(ok.body.toString()).toBe('fine');
    await expectNoClientConnections(gw);
  } finally {
    await gw?.close();
    await Promise.all([healthy, ...upstreams].map((u) => u.close()));
  }
  await expectNoLeaks(before);
}

describe('upstream faults with resilience on', () => {
  it('refused: 502 upstream_error after the retries, quickly', async () => {
    const before = await baseline();
    const refused = `http://127.0.0.1:${await closedPort()}`;
    await scenario(
      `{ targets: ["${refused}"] }`,
      [],
      async (gw) => {
        const { reply, ms } = await timed(`${gw.url}/svc/x`);
        expectProblem(reply, 502, 'upstream_error');
        expect(ms).toBeLessThan(2000);
        // three attempts (the first and two retries on the only target), each refused
        expect(
          await metric(gw, 'gatehouse_upstream_errors_total', { service: 'svc', reason: 'connect-error' }),
        ).toBe(3);
        expect(
          await metric(gw, 'gatehouse_upstream_retries_total', { service: 'svc', reason: 'connect-error' }),
        ).toBe(2);
      },
      before,
    );
  });

  it('accepting but never answering: 504 upstream_timeout within the response timeout', async () => {
    const before = await baseline();
    const silent = await startRawUpstream((s) => s.resume());
    await scenario(
      `{ targets: ["${silent.url}"], timeouts: { response: 300ms } }`,
      [silent],
      async (gw) => {
        const { reply, ms } = await timed(`${gw.url}/svc/x`);
        expectProblem(reply, 504, 'upstream_timeout');
        expect(ms).toBeGreaterThanOrEqual(280);
        expect(ms).toBeLessThan(1800);
        expect(
          await metric(gw, 'gatehouse_upstream_errors_total', { service: 'svc', reason: 'timeout' }),
        ).toBe(1);
      },
      before,
    );
  });

  it('headers, then a stall: the body timeout cuts the response (the client sees it cut)', async () => {
    const before = await baseline();
    const stall = await startRawUpstream(
      onRequestHead((s) => s.write('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n' + 'a'.repeat(10))),
    );
    await scenario(
      `{ targets: ["${stall.url}"], timeouts: { response: 300ms } }`,
      [stall],
      async (gw) => {
        const o = await fetchOutcome(`${gw.url}/svc/x`);
        expect(o.status).toBe(200);
        expect(o.complete).toBe(false);
        expect(o.body).toBe('a'.repeat(10));
        expect(o.ms).toBeGreaterThanOrEqual(280);
        expect(o.ms).toBeLessThan(1800);
      },
      before,
    );
  });

  it('reset mid-body: the client sees a cut response at once, never retried (the status went out)', async () => {
    const before = await baseline();
    let connections = 0;
    const reset = await startRawUpstream(
      onRequestHead((s) => {
        connections++;
        s.write('HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n' + 'a'.repeat(1000), () =>
          s.resetAndDestroy(),
        );
      }),
    );
    // resets are retryable here, but not once the status line has been sent to the client
    const service = `{ targets: ["${reset.url}"], retry: { on: [connect-error, reset, 503] } }`;
    await scenario(
      service,
      [reset],
      async (gw) => {
        const o = await fetchOutcome(`${gw.url}/svc/x`);
        expect(o.status).toBe(200);
        expect(o.complete).toBe(false);
        expect(o.body.length).toBeLessThan(100000);
        expect(o.ms).toBeLessThan(1000);
        expect(connections).toBe(1);
        expect(await metric(gw, 'gatehouse_upstream_errors_total', { service: 'svc', reason: 'reset' })).toBe(
          1,
        );
      },
      before,
    );
  });

  it('5xx storm: the breaker opens, and later requests fail fast without reaching the upstream', async () => {
    const before = await baseline();
    let hits = 0;
    // the storm's answers are held until all 20 requests are in: none is refused by a breaker
    // that opened on the first failures while a loaded machine was still sending the rest
    const held: Array<() => void> = [];
    const failing = await startUpstream((req, res) => {
      hits++;
      req.resume();
      held.push(() => {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('down');
      });
      if (hits >= 20) for (const answer of held.splice(0)) setTimeout(answer, 50);
    });
    const service =
      `{ targets: ["${failing.url}"], timeouts: { response: 3s }, ` +
      'circuitBreaker: { errorRate: 0.5, window: 5s, minRequests: 10, openFor: 10s } }';
    await scenario(
      service,
      [failing],
      async (gw) => {
        const storm = await Promise.all(Array.from({ length: 20 }, () => request(`${gw.url}/svc/x`)));
        expect(storm.every((r) => r.status === 500)).toBe(true); // 500 is not in retry.on: passed through
        expect(hits).toBe(20);
        for (let i = 0; i < 10; i++) {
          const { reply, ms } = await timed(`${gw.url}/svc/x`);
          expectProblem(reply, 503, 'circuit_open');
          expect(reply.headers['retry-after']).toBe('10');
          expect(ms).toBeLessThan(1500); // the response timeout is 3 s; and `hits` shows none reached it
        }
        expect(hits).toBe(20);
        expect(await metric(gw, 'gatehouse_circuit_breaker_state', { service: 'svc' })).toBe(2);
      },
      before,
    );
  });

  it('slow upstream answering within the timeout (active checks running): 200', async () => {
    const before = await baseline();
    const slow = await startUpstream((req, res) => {
      req.resume();
      if (req.url === '/health') res.end('ok');
      else setTimeout(() => res.end('late but fine'), 250);
    });
    await scenario(
      `{ targets: ["${slow.url}"], timeouts: { response: 1s }, healthCheck: { interval: 100ms, timeout: 50ms } }`,
      [slow],
      async (gw) => {
        const { reply, ms } = await timed(`${gw.url}/svc/x`);
        expect(reply.status).toBe(200);
        expect(reply.body.toString()).toBe('late but fine');
        expect(ms).toBeGreaterThanOrEqual(240);
        expect(ms).toBeLessThan(2000);
        expect(slow.received.filter((r) => r.url !== '/health')).toHaveLength(1);
        // the active checks ran meanwhile (their connection must be gone after close, too)
        expect(slow.received.some((r) => r.url === '/health')).toBe(true);
      },
      before,
    );
  });
});
