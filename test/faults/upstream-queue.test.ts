/**
 * A hung upstream whose connections are all busy: requests waiting in the pool's queue (where
 * undici's own timeouts do not run) still end with 504 by the response timeout, and a client
 * that leaves while queued leaves nothing behind.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { expectProblem, request } from '../helpers/http-client.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

describe('requests queued behind a hung upstream', () => {
  let hung: Upstream;
  let gw: TestGateway;

  beforeAll(async () => {
    // /hold streams a slow body for 3 s (keeping the one connection busy, never idle for a
    // whole response timeout); anything else is never answered
    hung = await startUpstream((req, res) => {
      if (req.url !== '/hold') return;
      res.writeHead(200, { 'content-type': 'text/plain' });
      const tick = setInterval(() => res.write('.'), 200);
      setTimeout(() => {
        clearInterval(tick);
        res.end('done');
      }, 3000);
    });
    gw = await startGateway(`
services:
  hung:
    targets: ["${hung.url}"]
    pool: { connections: 1 }
    timeouts: { response: 1s }
    retry: { attempts: 1 }
    circuitBreaker: { enabled: false }
routes:
  - { name: hung, match: { path: /** }, service: hung }
`);
  });
  afterAll(async () => {
    await gw?.close();
    await hung?.close();
  });

  it('answers the queued requests with 504 upstream_timeout within the response timeout', async () => {
    const hold = request(`${gw.url}/hold`);
    while (hung.received.length === 0) await new Promise((r) => setTimeout(r, 10));
    const replies = await Promise.all([1, 2, 3].map((i) => request(`${gw.url}/r${i}`)));
    for (const reply of replies) {
      const p = expectProblem(reply, 504, 'upstream_timeout');
      expect(p.detail).toContain('no free connection');
    }
    // they never reached the upstream: its one connection was still busy with /hold
    expect(hung.received.map((r) => r.url)).toEqual(['/hold']);
    const held = await hold;
    expect(held.status).toBe(200);
    expect(held.body.toString()).toMatch(/^\.+done$/);
  });

  it('serves the next request on the freed connection', async () => {
    const reply = await request(`${gw.url}/hold`);
    expect(reply.status).toBe(200);
    expect(hung.received.map((r) => r.url)).toEqual(['/hold', '/hold']);
  });
});
