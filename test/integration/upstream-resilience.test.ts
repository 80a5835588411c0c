/**
 * Upstream resilience through the real gateway against real sockets: balancing, active health
 * checks, passive ejection, the circuit breaker and retries. Every upstream is a scripted
 * node:http server on loopback; what the client gets (status, problem code), what each upstream
 * received (request counts, bodies) and what the admin port shows (`/services`, `/metrics`) are
 * all asserted. Intervals are short (100–400 ms) and every wait is a poll with a deadline.
 */
import { createHash } from 'node:crypto';
import { request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { expectProblem, request, type Reply, type RequestOptions } from '../helpers/http-client.js';
import { answers, metric, serviceView, sleep, tally, waitFor } from '../helpers/observe.js';
import { closedPort, echo, startRawUpstream, startUpstream, type Upstream } from '../helpers/upstream.js';

/** Retries, breaker and ejection off: a service that shows one mechanism at a time. */
const QUIET = 'passiveHealth: { consecutiveErrors: 0 }, circuitBreaker: { enabled: false }';
const NO_RETRY = 'retry: { attempts: 1 }';

/** A route `/<name>/**` to the service of the same name, prefix stripped. */
const routes = (names: readonly string[]) =>
  'routes:\n' +
  names
    .map((n) => `  - { name: ${n}, match: { path: /${n}/** }, service: ${n}, stripPrefix: /${n} }`)
    .join('\n');

/**
 * An upstream that answers its name (so the client can tell who answered) with a settable
 * status; `/health` answers `health`; `/hold` is held open while `holding`; `/slow` answers
 * after 150 ms.
 */
type Backend = {
  readonly name: string;
  readonly up: Upstream;
  readonly url: string;
  status: number;
  health: number;
  holding: boolean;
  readonly held: ServerResponse[];
  /** requests received other than health checks */
  hits(): number;
  release(): void;
};

async function backend(name: string): Promise<Backend> {
  const script = { status: 200, health: 200, holding: false, held: [] as ServerResponse[] };
  const up = await startUpstream((req, res) => {
    req.resume();
    if (req.url === '/health') {
      res.writeHead(script.health, { 'content-length': '0' });
      res.end();
      return;
    }
    if (req.url === '/hold' && script.holding) {
      script.held.push(res);
      return;
    }
    res.writeHead(script.status, { 'content-type': 'text/plain' });
    if (req.url === '/slow') setTimeout(() => res.end(name), 150);
    else res.end(name);
  });
  return Object.assign(script, {
    name,
    up,
    url: up.url,
    hits: () => up.received.filter((r) => r.url !== '/health').length,
    release: () => {
      for (const res of script.held.splice(0)) res.end(name);
    },
  });
}

/** `n` sequential GETs; the answering upstream's name (the body) of each. */
const address = (url: string) => new URL(url).host;

describe('balancing', () => {
  let gw: TestGateway;
  let a: Backend, b: Backend, c: Backend, h: Backend, k: Backend;

  beforeAll(async () => {
    [a, b, c, h, k] = (await Promise.all(['a', 'b', 'c', 'h', 'k'].map(backend))) as [
      Backend,
      Backend,
      Backend,
      Backend,
      Backend,
    ];
    const three = `[${a.url}, ${b.url}, ${c.url}]`;
    gw = await startGateway(`
services:
  rr: { targets: ${three}, balancer: round-robin }
  rand: { targets: ${three}, balancer: random }
  lr: { targets: ${three}, balancer: least-request }
  lrh: { targets: [${h.url}, ${k.url}], balancer: least-request }
${routes(['rr', 'rand', 'lr', 'lrh'])}
`);
  });
  afterAll(async () => {
    h.release();
    await gw.close();
    await Promise.all([a, b, c, h, k].map((x) => x.up.close()));
  });

  it('round-robin spreads 30 requests evenly over 3 targets (10 each)', async () => {
    const got = await answers(`${gw.url}/rr/x`, 30);
    expect(tally(got)).toEqual({ a: 10, b: 10, c: 10 });
  });

  it('random uses every target (60 requests)', async () => {
    const t = tally(await answers(`${gw.url}/rand/x`, 60));
    expect(Object.keys(t).sort()).toEqual(['a', 'b', 'c']);
    expect(t.a! + t.b! + t.c!).toBe(60);
  });

  it('least-request uses every target when none is busy (60 requests)', async () => {
    const t = tally(await answers(`${gw.url}/lr/x`, 60));
    expect(Object.keys(t).sort()).toEqual(['a', 'b', 'c']);
  });

  it('least-request sends new requests to the target with fewer in-flight requests', async () => {
    h.holding = true;
    k.holding = false; // k answers /hold at once
    // until one /hold request is held open by h (h's in-flight count is then 1, k's 0)
    const held: Array<Promise<Reply>> = [];
    for (let i = 0; i < 50 && h.held.length === 0; i++) {
      let settled = false;
      const p = request(`${gw.url}/lrh/hold`).finally(() => (settled = true));
      held.push(p);
      await waitFor(() => settled || h.held.length > 0, 'the /hold request to be answered or held');
    }
    expect(h.held).toHaveLength(1);
    const before = h.hits();
    const got = await answers(`${gw.url}/lrh/x`, 20);
    expect(tally(got)).toEqual({ k: 20 });
    expect(h.hits()).toBe(before); // nothing new reached the busy target
    expect((await serviceView(gw, 'lrh')).targets.find((t) => t.target === h.url)?.inflight).toBe(1);

    h.release();
    const replies = await Promise.all(held);
    expect(replies.every((r) => r.status === 200)).toBe(true);
    // not busy any more: both take traffic again
    const after = tally(await answers(`${gw.url}/lrh/x`, 40));
    expect(Object.keys(after).sort()).toEqual(['h', 'k']);
  });
});

describe('active health checks', () => {
  let gw: TestGateway;
  let a: Backend, b: Backend;
  const hc =
    'healthCheck: { path: /health, interval: 100ms, timeout: 50ms, healthyAfter: 2, unhealthyAfter: 2 }';

  beforeAll(async () => {
    [a, b] = (await Promise.all(['a', 'b'].map(backend))) as [Backend, Backend];
    gw = await startGateway(`
services:
  hc: { targets: [${a.url}, ${b.url}], ${hc}, ${QUIET} }
${routes(['hc'])}
`);
  });
  afterAll(async () => {
    await gw.close();
    await Promise.all([a, b].map((x) => x.up.close()));
  });

  const targetOf = async (x: Backend) =>
    (await serviceView(gw, 'hc')).targets.find((t) => t.target === x.url);
  const healthyGauge = (x: Backend) =>
    metric(gw, 'gatehouse_target_healthy', { service: 'hc', target: address(x.url) });

  it('a target whose /health fails stops getting traffic, and comes back once it passes again', async () => {
    expect(await healthyGauge(a)).toBe(1);
    a.health = 500;
    await waitFor(async () => (await targetOf(a))?.healthy === false, 'a to turn unhealthy');
    const view = await targetOf(a);
    expect(view).toMatchObject({ healthy: false, activeCheck: 'failing', lastCheckError: 'status 500' });
    expect((await targetOf(b))?.healthy).toBe(true);
    expect(await healthyGauge(a)).toBe(0);
    expect(await healthyGauge(b)).toBe(1);
    expect(tally(await answers(`${gw.url}/hc/x`, 10))).toEqual({ b: 10 });

    a.health = 200;
    await waitFor(async () => (await targetOf(a))?.healthy === true, 'a to turn healthy again');
    expect(await targetOf(a)).toMatchObject({ healthy: true, activeCheck: 'passing', lastCheckError: null });
    expect(await healthyGauge(a)).toBe(1);
    expect(tally(await answers(`${gw.url}/hc/x`, 10))).toEqual({ a: 5, b: 5 });
  });

  it('panic: with every target unhealthy, requests are still sent to them (and answered 200)', async () => {
    const panics = await metric(gw, 'gatehouse_upstream_panic_total', { service: 'hc' });
    a.health = 503;
    b.health = 503;
    await waitFor(async () => (await serviceView(gw, 'hc')).panic, 'both targets to turn unhealthy');
    const t = tally(await answers(`${gw.url}/hc/x`, 10));
    // the targets serve their other paths fine: the answers are theirs, not 503 no_healthy_target
    expect(t).toEqual({ a: 5, b: 5 });
    expect(await metric(gw, 'gatehouse_upstream_panic_total', { service: 'hc' })).toBe(panics + 10);
    expect(await healthyGauge(a)).toBe(0);
    expect(await healthyGauge(b)).toBe(0);
    a.health = 200;
    b.health = 200;
    await waitFor(async () => !(await serviceView(gw, 'hc')).panic, 'the targets to recover');
  });
});

describe('passive health (outlier ejection)', () => {
  let gw: TestGateway;
  let a: Backend, b: Backend, c: Backend, d: Backend, e: Backend;
  let refused: string;
  const plain = `${NO_RETRY}, circuitBreaker: { enabled: false }`;

  beforeAll(async () => {
    [a, b, c, d, e] = (await Promise.all(['a', 'b', 'c', 'd', 'e'].map(backend))) as [
      Backend,
      Backend,
      Backend,
      Backend,
      Backend,
    ];
    refused = `http://127.0.0.1:${await closedPort()}`;
    gw = await startGateway(`
services:
  pe: { targets: [${a.url}, ${b.url}], passiveHealth: { consecutiveErrors: 3, ejectFor: 400ms }, ${plain} }
  pr: { targets: [${refused}, ${c.url}], passiveHealth: { consecutiveErrors: 2, ejectFor: 10s }, ${plain} }
  pm: { targets: [${d.url}, ${e.url}], passiveHealth: { consecutiveErrors: 2, ejectFor: 10s, maxEjectedPercent: 50 }, ${plain} }
${routes(['pe', 'pr', 'pm'])}
`);
  });
  afterAll(async () => {
    await gw.close();
    await Promise.all([a, b, c, d, e].map((x) => x.up.close()));
  });

  it('a target answering 5xx consecutiveErrors times is ejected for ejectFor, then readmitted', async () => {
    a.status = 500;
    // round-robin: 6 requests give a its 3 consecutive 500s (passed through: no retries)
    const first = tally(await answers(`${gw.url}/pe/x`, 6));
    expect(first).toEqual({ 'status 500': 3, b: 3 });
    const ejectedAt = performance.now();
    const view = (await serviceView(gw, 'pe')).targets.find((t) => t.target === a.url);
    expect(view).toMatchObject({ ejected: true, healthy: false });
    expect(view?.ejectedForMs).toBeGreaterThan(0);
    expect(view?.ejectedForMs).toBeLessThanOrEqual(400);
    expect(await metric(gw, 'gatehouse_target_healthy', { service: 'pe', target: address(a.url) })).toBe(0);

    // ejected: no traffic at all, even though a would now answer 200
    a.status = 200;
    const hitsA = a.hits();
    expect(tally(await answers(`${gw.url}/pe/x`, 8))).toEqual({ b: 8 });
    expect(a.hits()).toBe(hitsA);

    await waitFor(
      async () => !(await serviceView(gw, 'pe')).targets.find((t) => t.target === a.url)?.ejected,
      'a to be readmitted',
    );
    expect(performance.now() - ejectedAt).toBeGreaterThanOrEqual(300);
    expect(tally(await answers(`${gw.url}/pe/x`, 10))).toEqual({ a: 5, b: 5 });
  });

  it('a target refusing connections is ejected after consecutiveErrors refusals', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) {
      const r = await request(`${gw.url}/pr/x`);
      if (r.status !== 200) expectProblem(r, 502, 'upstream_error');
      statuses.push(r.status);
    }
    // round-robin alternates until the second refusal ejects the target: two 502s in the first 4
    expect(statuses.filter((s) => s === 502)).toHaveLength(2);
    expect(statuses.slice(4).every((s) => s === 200)).toBe(true);
    const view = (await serviceView(gw, 'pr')).targets.find((t) => t.target === refused);
    expect(view).toMatchObject({ ejected: true, healthy: false });
  });

  it('maxEjectedPercent: of 2 failing targets at 50 %, only one is ejected', async () => {
    d.status = 500;
    e.status = 500;
    const got = await answers(`${gw.url}/pm/x`, 12);
    expect(got.every((s) => s === 'status 500')).toBe(true);
    const targets = (await serviceView(gw, 'pm')).targets;
    expect(targets.filter((t) => t.ejected)).toHaveLength(1);
    const kept = targets.find((t) => !t.ejected);
    const keptBackend = kept?.target === d.url ? d : e;
    const other = keptBackend === d ? e : d;
    // the one left takes all traffic, and is not ejected however often it fails
    const [keptHits, otherHits] = [keptBackend.hits(), other.hits()];
    await answers(`${gw.url}/pm/x`, 6);
    expect(keptBackend.hits()).toBe(keptHits + 6);
    expect(other.hits()).toBe(otherHits);
    expect((await serviceView(gw, 'pm')).targets.filter((t) => t.ejected)).toHaveLength(1);
  });
});

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
    const quick = 'circuitBreaker: { errorRate: 0.5, window: 1s, minRequests: 2, openFor: 300ms, probes: 1 }';
    gw = await startGateway(`
services:
  cb: ${svc(f.url)}
  cb4xx: ${svc(g.url)}
  cbconn: ${svc(refused)}
  cbtimeout: ${svc(hang.url, ', timeouts: { response: 100ms }')}
  cbskip: { targets: [${refused}], ${quick}, retry: { attempts: 3, backoff: 1ms, maxBackoff: 1ms }, passiveHealth: { consecutiveErrors: 0 } }
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

  it('POST with a body after a refusal: retried with Idempotency-Key, never without', async () => {
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

    const retriesBefore = await retries('postconn', 'connect-error');
    const refusals = await metric(gw, 'gatehouse_upstream_errors_total', {
      service: 'postconn',
      reason: 'connect-error',
    });
    const statuses: number[] = [];
    for (let i = 0; i < 2; i++) {
      const r = await get('/postconn/orders', { method: 'POST', body: 'order' });
      if (r.status !== 200) expectProblem(r, 502, 'upstream_error');
      statuses.push(r.status);
    }
    const failed = statuses.filter((x) => x === 502).length;
    expect(failed).toBeGreaterThanOrEqual(1);
    expect(
      await metric(gw, 'gatehouse_upstream_errors_total', { service: 'postconn', reason: 'connect-error' }),
    ).toBe(refusals + failed);
    expect(await retries('postconn', 'connect-error')).toBe(retriesBefore);
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
