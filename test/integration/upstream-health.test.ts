/**
 * Target health through the real gateway against real sockets: active health checks (and panic
 * when every target fails them) and passive ejection of outliers. Every upstream is a scripted
 * node:http server on loopback; what the client gets (status, problem code), what each upstream
 * received and what the admin port shows (`/services`, `/metrics`) are asserted. Intervals are
 * short (100–400 ms) and every wait is a poll with a deadline.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { expectProblem, request } from '../helpers/http-client.js';
import { answers, metric, serviceView, tally, waitFor } from '../helpers/observe.js';
import { address, backend, NO_RETRY, QUIET, routes, type Backend } from '../helpers/resilience.js';
import { closedPort } from '../helpers/upstream.js';

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
