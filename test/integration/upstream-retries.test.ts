/**
 * Retries through the real gateway against real sockets: on which failures and methods a
 * request is retried, on which target, with what body, and within which limits (attempts,
 * backoff, Retry-After, budget, deadline). Every upstream is a scripted server on loopback;
 * what the client gets (status, problem code), what each upstream received (requests, bodies,
 * arrival times) and what the admin port shows (`/metrics`) are asserted.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { expectProblem, request, type RequestOptions } from '../helpers/http-client.js';
import { answers, metric, tally } from '../helpers/observe.js';
import { backend, QUIET, routes, type Backend } from '../helpers/resilience.js';
import { closedPort, echo, startRawUpstream, startUpstream, type Upstream } from '../helpers/upstream.js';

/**
 * The retry tests' upstream, scripted by path: `/status/<code>/<id>` always answers <code>;
 * `/once/<code>/<id>[?ra=<seconds>]` answers <code> (with that Retry-After) the first time and
 * 200 after; `/hang/<id>` never answers. Arrival times are kept per path.
 */
function scripted(arrivals: Map<string, number[]>) {
  return (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://upstream');
    const [, kind, code] = url.pathname.split('/');
    const times = arrivals.get(url.pathname) ?? [];
    arrivals.set(url.pathname, times);
    times.push(performance.now());
    req.resume();
    req.on('end', () => {
      if (kind === 'hang') return;
      const failing = kind === 'status' || (kind === 'once' && times.length === 1);
      const headers: Record<string, string> = { 'content-type': 'text/plain' };
      const ra = url.searchParams.get('ra');
      if (failing && ra !== null) headers['retry-after'] = ra;
      res.writeHead(failing ? Number(code) : 200, headers);
      res.end(failing ? `failed ${code}` : 'ok');
    });
  };
}

/**
 * A raw upstream that reads each request (head, and body by Content-Length) and then resets
 * the connection the first time a path is asked for, answering 200 (with the body's length)
 * after that. Connections per path are counted.
 */
async function resetter() {
  const conns = new Map<string, number>();
  const bodies = new Map<string, number>();
  const raw = await startRawUpstream((socket) => {
    let buf = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString('latin1');
      const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
      if (buf.length < end + 4 + length) return;
      const path = head.split(' ')[1] ?? '';
      socket.removeAllListeners('data');
      const n = (conns.get(path) ?? 0) + 1;
      conns.set(path, n);
      bodies.set(path, length);
      if (n === 1) socket.resetAndDestroy();
      else socket.end(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok`);
    });
  });
  return { ...raw, conns, bodies };
}

describe('retries', () => {
  let gw: TestGateway;
  let a: Backend, b: Backend, c: Backend;
  let echoUp: Upstream, s: Upstream;
  let reset: Awaited<ReturnType<typeof resetter>>;
  let silent: Awaited<ReturnType<typeof startRawUpstream>>;
  const arrivals = new Map<string, number[]>();
  let refused: string;

  beforeAll(async () => {
    [a, b, c] = (await Promise.all(['a', 'b', 'c'].map(backend))) as [Backend, Backend, Backend];
    echoUp = await startUpstream(echo);
    s = await startUpstream(scripted(arrivals));
    reset = await resetter();
    silent = await startRawUpstream((socket) => socket.resume());
    refused = `http://127.0.0.1:${await closedPort()}`;
    gw = await startGateway(`
services:
  rconn: { targets: [${refused}, ${b.url}], retry: { minRetries: 1000 }, ${QUIET} }
  r503: { targets: [${a.url}, ${c.url}], retry: { minRetries: 1000 }, ${QUIET} }
  post: { targets: [${s.url}], ${QUIET} }
  postconn: { targets: [${refused}, ${echoUp.url}], retry: { minRetries: 1000 }, ${QUIET} }
  put: { targets: [${refused}, ${echoUp.url}], retry: { minRetries: 1000 }, ${QUIET} }
  rtimeout: { targets: [${silent.url}, ${c.url}], timeouts: { response: 200ms }, retry: { on: [timeout] }, ${QUIET} }
  streamed: { targets: [${reset.url}], retry: { on: [connect-error, reset, 503] }, ${QUIET} }
  ra: { targets: [${s.url}], retry: { maxRetryAfter: 2s }, ${QUIET} }
  cap: { targets: [${s.url}], retry: { attempts: 4, backoff: 1ms, maxBackoff: 1ms }, ${QUIET} }
  backoff: { targets: [${s.url}], retry: { attempts: 3, backoff: 100ms, maxBackoff: 100ms }, ${QUIET} }
  budget: { targets: [${s.url}], retry: { attempts: 3, backoff: 1ms, maxBackoff: 1ms, budget: 0.2, minRetries: 0 }, ${QUIET} }
  deadline: { targets: [${s.url}], timeouts: { response: 5s }, retry: { deadline: 300ms }, ${QUIET} }
  deadline2: { targets: [${refused}], retry: { backoff: 200ms, maxBackoff: 200ms, deadline: 150ms }, ${QUIET} }
${routes(['rconn', 'r503', 'post', 'postconn', 'put', 'rtimeout', 'streamed', 'ra', 'cap', 'backoff', 'budget', 'deadline', 'deadline2'])}
`);
  });
  afterAll(async () => {
    await gw.close();
    await Promise.all([a, b, c].map((x) => x.up.close()));
    await Promise.all([echoUp.close(), s.close(), reset.close(), silent.close()]);
  });

  const get = (path: string, options: RequestOptions = {}) => request(`${gw.url}${path}`, options);
  const hits = (path: string) => arrivals.get(path)?.length ?? 0;
  const retries = (service: string, reason: string) =>
    metric(gw, 'gatehouse_upstream_retries_total', { service, reason });
  const skipped = (service: string, reason: string) =>
    metric(gw, 'gatehouse_upstream_retries_skipped_total', { service, reason });

  it('GET: a refused connection is retried on the other target; every request succeeds', async () => {
    const got = await answers(`${gw.url}/rconn/x`, 20);
    expect(tally(got)).toEqual({ b: 20 });
    expect(b.hits()).toBe(20);
    // round-robin gives the refusing target its turn (half the first attempts), each retried once
    expect(await retries('rconn', 'connect-error')).toBe(10);
    expect(
      await metric(gw, 'gatehouse_upstream_errors_total', { service: 'rconn', reason: 'connect-error' }),
    ).toBe(await retries('rconn', 'connect-error'));
  });

  it('a 503 from one target is retried on the other', async () => {
    a.status = 503;
    const got = await answers(`${gw.url}/r503/x`, 10);
    expect(tally(got)).toEqual({ c: 10 });
    expect(a.hits()).toBeGreaterThanOrEqual(5);
    expect(await retries('r503', '503')).toBe(a.hits());
  });

  it('POST: not retried without Idempotency-Key; retried with one (no body sent yet)', async () => {
    const plain = await get('/post/once/503/p1', { method: 'POST', body: 'order' });
    expect(plain.status).toBe(503);
    expect(plain.body.toString()).toBe('failed 503');
    expect(hits('/once/503/p1')).toBe(1);

    const keyed = await get('/post/once/503/p2', { method: 'POST', headers: { 'idempotency-key': 'k-1' } });
    expect(keyed.status).toBe(200);
    expect(hits('/once/503/p2')).toBe(2);

    // a body the upstream has read cannot be sent again (it is streamed, not buffered): the key
    // makes the request retryable, but this 503 came after the body went out
    const sent = await get('/post/once/503/p3', {
      method: 'POST',
      body: 'order',
      headers: { 'idempotency-key': 'k-2' },
    });
    expect(sent.status).toBe(503);
    expect(hits('/once/503/p3')).toBe(1);
  });

  it('POST with a body after a refusal: retried, with or without Idempotency-Key (never sent)', async () => {
    const retried = await retries('postconn', 'connect-error');
    for (const key of ['k-3', 'k-4']) {
      const r = await get('/postconn/orders', {
        method: 'POST',
        body: `order ${key}`,
        headers: { 'idempotency-key': key },
      });
      expect(r.status).toBe(200);
      expect((JSON.parse(r.body.toString()) as { body: string }).body).toBe(`order ${key}`);
    }
    // round-robin: the refusing target was the first pick of at least one of the two
    expect(await retries('postconn', 'connect-error')).toBeGreaterThanOrEqual(retried + 1);

    // without a key too: the refused connection carried nothing, so no target saw the POST twice
    const retriesBefore = await retries('postconn', 'connect-error');
    const refusals = await metric(gw, 'gatehouse_upstream_errors_total', {
      service: 'postconn',
      reason: 'connect-error',
    });
    for (let i = 0; i < 2; i++) {
      const r = await get('/postconn/orders', { method: 'POST', body: `order ${i}` });
      expect(r.status).toBe(200);
      expect((JSON.parse(r.body.toString()) as { body: string }).body).toBe(`order ${i}`);
    }
    const retriedNow = (await retries('postconn', 'connect-error')) - retriesBefore;
    expect(retriedNow).toBeGreaterThanOrEqual(1);
    expect(
      await metric(gw, 'gatehouse_upstream_errors_total', { service: 'postconn', reason: 'connect-error' }),
    ).toBe(refusals + retriedNow);
  });

  it('PUT with a body: after a refusal the other target receives the whole body intact', async () => {
    const body = Buffer.alloc(256 * 1024, 'abcdefghijklmnopqrstuvwxyz0123456789');
    const digest = createHash('sha256').update(body).digest('hex');
    const before = await retries('put', 'connect-error');
    // two requests: round-robin makes the refusing target the first pick of at least one
    for (const chunked of [false, true]) {
      const r = await get('/put/doc', {
        method: 'PUT',
        body: chunked ? Readable.from([body.subarray(0, 100_000), body.subarray(100_000)]) : body,
      });
      expect(r.status).toBe(200);
      const echoed = JSON.parse(r.body.toString()) as { method: string; body: string };
      expect(echoed.method).toBe('PUT');
      expect(echoed.body.length).toBe(body.length);
      expect(createHash('sha256').update(echoed.body).digest('hex')).toBe(digest);
    }
    expect(await retries('put', 'connect-error')).toBeGreaterThanOrEqual(before + 1);
    expect(echoUp.received.filter((r) => r.method === 'PUT')).toHaveLength(2);
  });

  it('a response timeout is retried on the other target when retry.on names timeout', async () => {
    // two requests: round-robin makes the silent target the first pick of at least one
    expect(await answers(`${gw.url}/rtimeout/x`, 2)).toEqual(['c', 'c']);
    expect(await retries('rtimeout', 'timeout')).toBeGreaterThanOrEqual(1);
    expect(
      await metric(gw, 'gatehouse_upstream_errors_total', { service: 'rtimeout', reason: 'timeout' }),
    ).toBe(await retries('rtimeout', 'timeout'));
  });

  it('a request whose body was already streamed is not retried after a reset (a GET is)', async () => {
    const r = await get('/streamed/get-1');
    expect(r.status).toBe(200);
    expect(reset.conns.get('/get-1')).toBe(2);

    const put = await get('/streamed/put-1', { method: 'PUT', body: 'x'.repeat(10_000) });
    expectProblem(put, 502, 'upstream_error');
    expect(reset.conns.get('/put-1')).toBe(1);
    expect(reset.bodies.get('/put-1')).toBe(10_000); // the upstream had the whole body when it reset
    expect(await retries('streamed', 'reset')).toBe(1);
  });

  it('Retry-After below maxRetryAfter is waited for; above it, the 503 goes to the client', async () => {
    const start = performance.now();
    const r = await get('/ra/once/503/ra1?ra=1');
    expect(r.status).toBe(200);
    expect(performance.now() - start).toBeGreaterThanOrEqual(1000);
    const [t1, t2] = arrivals.get('/once/503/ra1') ?? [];
    expect(t2! - t1!).toBeGreaterThanOrEqual(990);

    const skippedBefore = await skipped('ra', 'retry_after');
    const far = await get('/ra/once/503/ra2?ra=5');
    expect(far.status).toBe(503);
    expect(far.headers['retry-after']).toBe('5');
    expect(hits('/once/503/ra2')).toBe(1);
    expect(await skipped('ra', 'retry_after')).toBe(skippedBefore + 1);
  });

  it('attempts caps the upstream requests (attempts: 4 → 4 requests, the last answer relayed)', async () => {
    const r = await get('/cap/status/503/c1');
    expect(r.status).toBe(503);
    expect(r.body.toString()).toBe('failed 503');
    expect(hits('/status/503/c1')).toBe(4);
    expect(await retries('cap', '503')).toBe(3);
    // a status retry.on does not name is never retried
    expect((await get('/cap/status/500/c2')).status).toBe(500);
    expect(hits('/status/500/c2')).toBe(1);
  });

  it('backoff: attempts are spaced at least `backoff` apart', async () => {
    expect((await get('/backoff/status/503/b1')).status).toBe(503);
    const times = arrivals.get('/status/503/b1') ?? [];
    expect(times).toHaveLength(3);
    expect(times[1]! - times[0]!).toBeGreaterThanOrEqual(98);
    expect(times[2]! - times[1]!).toBeGreaterThanOrEqual(98);
  });

  it('budget 0.2 with minRetries 0: retries stay within 20 % of requests', async () => {
    const requests = 50;
    for (let i = 0; i < requests; i++) expect((await get('/budget/status/503/bud')).status).toBe(503);
    const retried = hits('/status/503/bud') - requests;
    expect(retried).toBeGreaterThan(0);
    expect(retried).toBeLessThanOrEqual(0.2 * requests);
    expect(await retries('budget', '503')).toBe(retried);
    expect(await skipped('budget', 'budget')).toBeGreaterThanOrEqual(requests - retried);
  });

  it('deadline: an upstream that never answers → 504 at the deadline, not the response timeout', async () => {
    const start = performance.now();
    const r = await get('/deadline/hang/d1');
    const elapsed = performance.now() - start;
    expectProblem(r, 504, 'upstream_timeout');
    expect(elapsed).toBeGreaterThanOrEqual(250);
    expect(elapsed).toBeLessThan(2000); // the response timeout is 5 s
    expect(hits('/hang/d1')).toBe(1);
  });

  it('deadline: a retry that would start after it is skipped → 502', async () => {
    const start = performance.now();
    expectProblem(await get('/deadline2/x'), 502, 'upstream_error');
    expect(performance.now() - start).toBeLessThan(1000);
    expect(await skipped('deadline2', 'deadline')).toBe(1);
    expect(await retries('deadline2', 'connect-error')).toBe(0);
  });
});

/**
 * A raw upstream that answers `a` to the first request on each connection (kept alive) and
 * closes the connection when a second request arrives on it: a target that went away behind a
 * pooled keep-alive connection. The methods of the requests it dropped are kept.
 */
async function dropsPooled() {
  const dropped: string[] = [];
  const raw = await startRawUpstream((socket) => {
    let buf = Buffer.alloc(0);
    let served = 0;
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        const length = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        buf = buf.subarray(end + 4 + length);
        if (served++ > 0) {
          dropped.push(head.split(' ')[0] ?? '');
          socket.destroy();
          return;
        }
        socket.write('HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1\r\n\r\na');
      }
    });
  });
  return { ...raw, dropped };
}

describe('retry.on by default: a reset of a pooled connection', () => {
  let gw: TestGateway;
  let other: Backend;
  let dropper: Awaited<ReturnType<typeof dropsPooled>>;

  beforeAll(async () => {
    other = await backend('b');
    dropper = await dropsPooled();
    // retry left at its defaults
    gw = await startGateway(`
services:
  pooled: { targets: [${dropper.url}, ${other.url}], ${QUIET} }
${routes(['pooled'])}
`);
  });
  afterAll(async () => {
    await gw.close();
    await Promise.all([other.up.close(), dropper.close()]);
  });

  const resetRetries = () =>
    metric(gw, 'gatehouse_upstream_retries_total', { service: 'pooled', reason: 'reset' });

  it('a GET is retried on the other target and answered 200', async () => {
    // round-robin: the dropping target gets every other request, its second on its pooled connection
    const got = await answers(`${gw.url}/pooled/x`, 6);
    expect(got.every((body) => body === 'a' || body === 'b')).toBe(true);
    expect(dropper.dropped.filter((m) => m === 'GET').length).toBeGreaterThanOrEqual(1);
    expect(await resetRetries()).toBe(dropper.dropped.length);
  });

  it('a POST is not retried: 502 upstream_error', async () => {
    const retried = await resetRetries();
    const before = dropper.dropped.length;
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await request(`${gw.url}/pooled/x`, { method: 'POST', body: 'order' });
      if (r.status !== 200) expectProblem(r, 502, 'upstream_error');
      statuses.push(r.status);
    }
    const droppedPosts = dropper.dropped.slice(before);
    expect(droppedPosts.length).toBeGreaterThanOrEqual(1);
    expect(droppedPosts.every((m) => m === 'POST')).toBe(true);
    expect(statuses.filter((s) => s === 502)).toHaveLength(droppedPosts.length);
    expect(await resetRetries()).toBe(retried);
  });
});
