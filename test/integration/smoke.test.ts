import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

describe('proxying through the real gateway', () => {
  let upstream: Upstream;
  let gw: TestGateway;
  beforeAll(async () => {
    upstream = await startUpstream();
    gw = await startGateway(`
services:
  echo: { targets: ["${upstream.url}"] }
routes:
  - { name: api, match: { path: /api/** }, service: echo, stripPrefix: /api }
`);
  });
  afterAll(async () => {
    await gw.close();
    await upstream.close();
  });

  it('forwards the request with the prefix stripped and answers with a request id', async () => {
    const res = await fetch(`${gw.url}/api/orders/7?x=1`, { headers: { 'x-request-id': 'abc-123' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-request-id')).toBe('abc-123');
    const body = (await res.json()) as { url: string; headers: Record<string, string> };
    expect(body.url).toBe('/orders/7?x=1');
    expect(body.headers['x-request-id']).toBe('abc-123');
  });

  it('answers 404 no_route as problem+json', async () => {
    const res = await fetch(`${gw.url}/elsewhere`);
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    const body = (await res.json()) as { code: string; instance: string };
    expect(body.code).toBe('no_route');
    expect(body.instance).toBe(`urn:uuid:${res.headers.get('x-request-id')}`);
  });
});
