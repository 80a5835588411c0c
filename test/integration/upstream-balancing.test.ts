/**
 * Balancing through the real gateway against real sockets: round-robin, random and
 * least-request over scripted node:http upstreams on loopback. What the client gets (which
 * upstream answered) and what the admin port shows (`/services`) are asserted; every wait is a
 * poll with a deadline.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { request, type Reply } from '../helpers/http-client.js';
import { answers, serviceView, tally, waitFor } from '../helpers/observe.js';
import { backend, routes, type Backend } from '../helpers/resilience.js';

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
