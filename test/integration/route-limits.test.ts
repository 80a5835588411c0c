/**
 * A route's own `limits.bodySize`, `timeouts.response` and `retry`, through the real gateway:
 * each applies to its route only, and the other routes of the same service keep the gateway's
 * or the service's.
 */
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

let upstream: Upstream;
let gw: TestGateway;
/** paths whose next answer is a 503 (then 200) */
const failOnce = new Set<string>();

beforeAll(async () => {
  upstream = await startUpstream((req, res) => {
    req.resume();
    req.on('end', () => {
      const url = req.url ?? '';
      if (url.includes('slow')) {
        setTimeout(() => res.end('late'), 2500); // undici's timers tick every 0.5 s
        return;
      }
      if (failOnce.delete(url)) {
        res.writeHead(503).end('busy');
        return;
      }
      res.end('ok');
    });
  });
  gw = await startGateway(`
services:
  api:
    targets: ["${upstream.url}"]
    retry: { attempts: 3, backoff: 0, maxBackoff: 0 }
routes:
  - { name: default, match: { path: /default/** }, service: api }
  - name: small
    match: { path: /small/** }
    service: api
    limits: { bodySize: 1kb }
  - name: quick
    match: { path: /quick/** }
    service: api
    timeouts: { response: 100ms }
  - name: once
    match: { path: /once/** }
    service: api
    retry: { attempts: 1 }
`);
});
afterAll(async () => {
  await gw?.close();
  await upstream?.close();
});

async function send(
  path: string,
  body?: string,
  chunked = false,
): Promise<{ status: number; code?: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${gw.url}${path}`,
      {
        method: body === undefined ? 'GET' : 'POST',
        headers: body === undefined || chunked ? {} : { 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let code: string | undefined;
          if (res.headers['content-type'] === 'application/problem+json')
            code = (JSON.parse(text) as { code: string }).code;
          resolve({ status: res.statusCode ?? 0, ...(code === undefined ? {} : { code }) });
        });
      },
    );
    req.on('error', reject);
    if (body !== undefined && chunked) {
      req.write(body.slice(0, 10));
      req.end(body.slice(10));
    } else req.end(body);
  });
}

describe("a route's own limits", () => {
  it('limits.bodySize: a declared or a streamed body over the route limit is refused; other routes keep 10mb', async () => {
    const big = 'x'.repeat(2048);
    expect(await send('/small/x', big)).toEqual({ status: 413, code: 'body_too_large' });
    expect(await send('/small/x', big, true)).toEqual({ status: 413, code: 'body_too_large' });
    expect(await send('/small/x', 'x'.repeat(1000))).toEqual({ status: 200 });
    expect(await send('/default/x', big)).toEqual({ status: 200 });
    expect(await send('/default/x', big, true)).toEqual({ status: 200 });
  });

  it("timeouts.response: the route's own timeout, the service's elsewhere", async () => {
    expect(await send('/quick/slow')).toEqual({ status: 504, code: 'upstream_timeout' });
    expect(await send('/default/slow')).toEqual({ status: 200 });
  });

  it("retry: the route's own attempts, the service's elsewhere", async () => {
    failOnce.add('/once/x');
    const before = upstream.received.length;
    expect(await send('/once/x')).toEqual({ status: 503 });
    expect(upstream.received.length - before).toBe(1);
    failOnce.add('/default/y');
    const again = upstream.received.length;
    expect(await send('/default/y')).toEqual({ status: 200 });
    expect(upstream.received.length - again).toBe(2);
  });
});
