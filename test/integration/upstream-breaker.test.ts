/**
 * The circuit breaker through the real gateway against real sockets: what opens it (5xx,
 * refusals, timeouts; not 4xx), failing fast, probes after `openFor`, and a retry meeting an
 * open or half-open breaker. Every upstream is a scripted server on loopback; what the client
 * gets (status, problem code), what each upstream received and what the admin port shows
 * (`/services`, `/metrics`) are asserted. Intervals are short (300 ms) and every wait is a poll
 * with a deadline.
 */
import { request as httpRequest, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { expectProblem, request, type Reply } from '../helpers/http-client.js';
import { answers, metric, serviceView, sleep, tally, waitFor } from '../helpers/observe.js';
import { backend, NO_RETRY, routes, type Backend } from '../helpers/resilience.js';
import { closedPort, startRawUpstream, startUpstream, type Upstream } from '../helpers/upstream.js';

describe('circuit breaker', () => {
  let gw: TestGateway;
  let f: Backend, g: Backend;
  let hang: Awaited<ReturnType<typeof startRawUpstream>>;
  let slow: Upstream;
  const slowHeld: ServerResponse[] = [];
  let refused: string;
  const breaker = 'circuitBreaker: { errorRate: 0.5, window: 1s, minRequests: 5, openFor: 300ms, probes: 2 }';
  const svc = (targets: string, extra = '') =>
    `{ targets: [${targets}], ${breaker}, ${NO_RETRY}, passiveHealth: { consecutiveErrors: 0 }${extra} }`;

  beforeAll(async () => {
    [f, g] = (await Promise.all(['f', 'g'].map(backend))) as [Backend, Backend];
    hang = await startRawUpstream((s: Socket) => s.resume());
    // `/held` is answered by the test (slowHeld), `/fail` with 500, anything else with 200
    slow = await startUpstream((req, res) => {
      req.resume();
      if (req.url === '/held') slowHeld.push(res);
      else res.writeHead(req.url === '/fail' ? 500 : 200).end('slow');
    });
    refused = `http://127.0.0.1:${await closedPort()}`;
    // cbskip stays open (30 s): its second request must meet the open breaker, not a half-open
    // one after a slow machine took 300 ms between the two
    const quick = 'circuitBreaker: { errorRate: 0.5, window: 1s, minRequests: 2, openFor: 300ms, probes: 1 }';
    gw = await startGateway(`
services:
  cb: ${svc(f.url)}
  cb4xx: ${svc(g.url)}
  cbconn: ${svc(refused)}
  cbtimeout: ${svc(hang.url, ', timeouts: { response: 100ms }')}
  cbskip: { targets: [${refused}], ${quick.replace('300ms', '30s')}, retry: { attempts: 3, backoff: 1ms, maxBackoff: 1ms }, passiveHealth: { consecutiveErrors: 0 } }
  cbprobe: { targets: [${slow.url}], ${quick}, retry: { attempts: 2, backoff: 1ms, maxBackoff: 1ms }, passiveHealth: { consecutiveErrors: 0 } }
${routes(['cb', 'cb4xx', 'cbconn', 'cbtimeout', 'cbskip', 'cbprobe'])}
`);
  });
  afterAll(async () => {
    for (const res of slowHeld) res.destroy();
    await gw.close();
    await Promise.all([f.up.close(), g.up.close(), hang.close(), slow.close()]);
  });

  const state = (service: string) => metric(gw, 'gatehouse_circuit_breaker_state', { service });
  const get = (path: string) => request(`${gw.url}${path}`);

  /** 5 failing answers in a row: the window holds minRequests, all failed: the breaker opens. */
  async function openIt(): Promise<void> {
    f.status = 500;
    for (let i = 0; i < 5; i++) expect((await get('/cb/x')).status).toBe(500);
  }

  it('opens on 5xx, fails fast without reaching the upstream, probes after openFor, then closes', async () => {
    expect(await state('cb')).toBe(0);
    const hits = f.hits();
    await openIt();
    expect(f.hits()).toBe(hits + 5);
    expect(await state('cb')).toBe(2);
    const fast = await Promise.all([1, 2, 3, 4, 5].map(() => get('/cb/x')));
    for (const r of fast) {
      expectProblem(r, 503, 'circuit_open');
      expect(r.headers['retry-after']).toBe('1');
    }
    expect(f.hits()).toBe(hits + 5); // none of them reached the upstream
    expect((await serviceView(gw, 'cb')).breaker).toMatchObject({ enabled: true });

    await sleep(350);
    expect(await state('cb')).toBe(1); // half-open: the next requests are probes
    f.status = 200;
    // three at once: `probes` (2) go through, the third still fails fast
    const probes = await Promise.all([1, 2, 3].map(() => get('/cb/slow')));
    expect(probes.map((r) => r.status).sort()).toEqual([200, 200, 503]);
    expectProblem(probes.find((r) => r.status === 503) as Reply, 503, 'circuit_open');
    expect(f.hits()).toBe(hits + 7);
    // both probes succeeded: closed again, with an empty window
    expect(await state('cb')).toBe(0);
    expect((await serviceView(gw, 'cb')).breaker).toMatchObject({
      state: 'closed',
      requests: 0,
      failures: 0,
    });
    expect(tally(await answers(`${gw.url}/cb/x`, 5))).toEqual({ f: 5 });
  });

  it('re-opens when a probe fails', async () => {
    await openIt();
    expect(await state('cb')).toBe(2);
    await sleep(350);
    const hits = f.hits();
    expect((await get('/cb/x')).status).toBe(500); // the probe reached the still-failing upstream
    expect(f.hits()).toBe(hits + 1);
    expect(await state('cb')).toBe(2);
    const r = await get('/cb/x');
    expectProblem(r, 503, 'circuit_open');
    expect(r.headers['retry-after']).toBe('1');
    expect(f.hits()).toBe(hits + 1);
    // recover for later tests
    await sleep(350);
    f.status = 200;
    await answers(`${gw.url}/cb/x`, 2);
    expect(await state('cb')).toBe(0);
  });

  it('a retry is not sent once the breaker has opened (retries_skipped_total{reason="breaker"})', async () => {
    // minRequests 2: the first attempt's refusal and the retry's refusal open it; the third
    // attempt is refused by the breaker, and the client gets the last attempt's error
    expectProblem(await get('/cbskip/x'), 502, 'upstream_error');
    expect(
      await metric(gw, 'gatehouse_upstream_retries_total', { service: 'cbskip', reason: 'connect-error' }),
    ).toBe(1);
    expect(
      await metric(gw, 'gatehouse_upstream_retries_skipped_total', { service: 'cbskip', reason: 'breaker' }),
    ).toBe(1);
    expectProblem(await get('/cbskip/x'), 503, 'circuit_open');
  });

  it('a probe admitted for a retry is given back when the client leaves while the retried answer is read', async () => {
    // a request admitted while closed, whose 503 comes only once the breaker is half-open
    const early = httpRequest(`${gw.url}/cbprobe/held`, { agent: false });
    early.on('error', () => undefined);
    early.on('response', (res) => res.on('error', () => undefined).resume());
    early.end();
    await waitFor(() => slowHeld.length === 1, 'the early request to reach the upstream');
    for (let i = 0; i < 2; i++) expect((await get('/cbprobe/fail')).status).toBe(500);
    expectProblem(await get('/cbprobe/x'), 503, 'circuit_open');
    await sleep(350);
    // the 503 is retryable: the retry takes the only probe, and the 503's body is being read
    const held = slowHeld[0] as ServerResponse;
    held.writeHead(503, { 'content-type': 'text/plain' });
    held.write('partial');
    await sleep(100);
    early.destroy(); // the client leaves before the retry was sent
    await sleep(100);
    // the probe slot is free again: the next request is the probe, succeeds, and closes it
    const r = await get('/cbprobe/x');
    expect(r.status).toBe(200);
    expect(await state('cbprobe')).toBe(0);
  });

  it('4xx answers never open it', async () => {
    g.status = 404;
    const got = await Promise.all(Array.from({ length: 20 }, () => get('/cb4xx/x')));
    expect(got.every((r) => r.status === 404)).toBe(true);
    expect(g.hits()).toBe(20);
    expect(await state('cb4xx')).toBe(0);
    expect((await serviceView(gw, 'cb4xx')).breaker).toMatchObject({
      state: 'closed',
      requests: 20,
      failures: 0,
    });
  });

  it('connection errors count: 5 refusals open it', async () => {
    for (let i = 0; i < 5; i++) expectProblem(await get('/cbconn/x'), 502, 'upstream_error');
    expectProblem(await get('/cbconn/x'), 503, 'circuit_open');
    expect(await state('cbconn')).toBe(2);
  });

  it('timeouts count: 5 response timeouts open it', async () => {
    const got = await Promise.all([1, 2, 3, 4, 5].map(() => get('/cbtimeout/x')));
    for (const r of got) expectProblem(r, 504, 'upstream_timeout');
    expectProblem(await get('/cbtimeout/x'), 503, 'circuit_open');
    expect(await state('cbtimeout')).toBe(2);
  });
});
