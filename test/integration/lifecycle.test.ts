import { readFileSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { Gateway } from '../../src/server/gateway.js';
import { configFrom, startGateway, TestGateway } from '../helpers/gateway.js';
import { writeTempConfig } from '../helpers/process.js';
import { closedPort, startUpstream, type Upstream } from '../helpers/upstream.js';

let upstream: Upstream | undefined;
let gw: TestGateway | undefined;

afterEach(async () => {
  await gw?.close(100);
  await upstream?.close();
  gw = undefined;
  upstream = undefined;
});

const config = (url: string, drain = '5s') => `
shutdown: { drainTimeout: ${drain} }
services:
  slow: { targets: ["${url}"] }
routes:
  - { name: all, match: { path: /** }, service: slow }
`;

describe('probes', () => {
  it('answers /livez, /healthz and /readyz (verbose lists the checks) without a token', async () => {
    upstream = await startUpstream();
    gw = await startGateway(
      config(upstream.url).replace(
        'shutdown:',
        'admin: { host: 127.0.0.1, port: 0, token: s3cret }\nshutdown:',
      ),
    );
    for (const path of ['/livez', '/healthz']) {
      const res = await fetch(gw.adminUrl + path);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ status: 'ok' });
    }
    const ready = await fetch(gw.adminUrl + '/readyz?verbose');
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready', checks: { config: true, accepting: true } });
  });

  it('requires the admin token elsewhere, compared exactly', async () => {
    upstream = await startUpstream();
    gw = await startGateway(
      config(upstream.url).replace(
        'shutdown:',
        'admin: { host: 127.0.0.1, port: 0, token: s3cret }\nshutdown:',
      ),
    );
    const none = await fetch(gw.adminUrl + '/services');
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toContain('Bearer');
    const wrong = await fetch(gw.adminUrl + '/services', { headers: { authorization: 'Bearer s3cre' } });
    expect(wrong.status).toBe(401);
    const right = await fetch(gw.adminUrl + '/nothing-here', { headers: { authorization: 'Bearer s3cret' } });
    expect(right.status).toBe(404);
    expect(right.headers.get('content-type')).toBe('application/problem+json');
  });
});

describe('graceful shutdown', () => {
  it('turns /readyz 503, stops accepting, and lets the in-flight request finish', async () => {
    let release: () => void = () => undefined;
    let arrived: () => void = () => undefined;
    const arrival = new Promise<void>((r) => (arrived = r));
    upstream = await startUpstream((_req, res) => {
      arrived();
      release = () => res.end('finished');
    });
    gw = await startGateway(config(upstream.url));
    const port = gw.gateway.port;
    const inFlight = request(`${gw.url}/work`);
    await arrival;

    const closing = gw.gateway.shutdown(5000);
    const ready = await fetch(gw.adminUrl + '/readyz');
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ status: 'draining' });
    await expect(fetch(`http://127.0.0.1:${port}/new`)).rejects.toThrow();

    release();
    const res = await inFlight;
    expect(res.statusCode).toBe(200);
    expect(res.headers.connection).toBe('close');
    expect(await res.body.text()).toBe('finished');
    await closing;
  });

  it('keeps accepting and serving for shutdown.acceptGrace (Connection: close, /readyz 503), then closes', async () => {
    upstream = await startUpstream();
    gw = await startGateway(config(upstream.url).replace('shutdown: {', 'shutdown: { acceptGrace: 500ms,'));
    const port = gw.gateway.port;
    // a keep-alive connection opened before the SIGTERM
    const agent = new Agent({ keepAliveTimeout: 60_000 });
    const before = await request(`${gw.url}/before`, { dispatcher: agent });
    expect(before.headers.connection).toBe('keep-alive');
    await before.body.text();

    const closing = gw.gateway.shutdown();
    const ready = await fetch(gw.adminUrl + '/readyz');
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ status: 'draining' });
    // a new connection during the grace (the load balancer has not seen the 503 yet) is served
    const fresh = await request(`http://127.0.0.1:${port}/during`, { reset: true });
    expect(fresh.statusCode).toBe(200);
    expect(fresh.headers.connection).toBe('close');
    await fresh.body.text();
    // so is the next request on the connection that was open: its answer closes it
    const reused = await request(`${gw.url}/reused`, { dispatcher: agent });
    expect(reused.statusCode).toBe(200);
    expect(reused.headers.connection).toBe('close');
    await reused.body.text();

    await closing;
    await expect(fetch(`http://127.0.0.1:${port}/after`)).rejects.toThrow();
    await agent.close();
  });

  it('cuts what is left when the drain timeout expires', async () => {
    upstream = await startUpstream(() => undefined); // never answers
    gw = await startGateway(config(upstream.url, '200ms'));
    const inFlight = request(`${gw.url}/hang`).then(
      () => 'answered',
      () => 'cut',
    );
    await new Promise((r) => setTimeout(r, 50));
    await gw.gateway.shutdown();
    expect(await inFlight).toBe('cut');
  });

  it('closes idle keep-alive connections at once', { timeout: 5000 }, async () => {
    upstream = await startUpstream();
    // keep-alive and drain timeouts far beyond the test's timeout: only closing idle
    // connections lets the drain finish in time
    gw = await startGateway(
      config(upstream.url, '60s').replace('shutdown:', 'limits: { keepAliveTimeout: 60s }\nshutdown:'),
    );
    const res = await request(`${gw.url}/x`);
    await res.body.text();
    await gw.gateway.shutdown();
    expect(gw.gateway.draining).toBe(true);
  });
});

describe('upstream pools', () => {
  it('a service whose targets are down does not affect startup', async () => {
    const port = await closedPort();
    gw = await startGateway(config(`http://127.0.0.1:${port}`));
    const res = await fetch(`${gw.url}/x`);
    expect(res.status).toBe(502);
  });
});

describe('reload', () => {
  it('POST /reload swaps routes from the file, and rejects an invalid file keeping the running config', async () => {
    upstream = await startUpstream();
    const base = `listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0, token: t0k }\nservices:\n  s: { targets: ["${upstream.url}"] }\n`;
    const file = writeTempConfig(base + 'routes:\n  - { name: a, match: { path: /a }, service: s }\n');
    const gateway = await Gateway.start(configFrom(readFileSync(file, 'utf8')), { configFile: file });
    gw = new TestGateway(gateway);
    const auth = { authorization: 'Bearer t0k' };
    expect((await fetch(`${gw.url}/a`)).status).toBe(200);
    expect((await fetch(`${gw.url}/b`)).status).toBe(404);

    writeFileSync(file, base + 'routes:\n  - { name: b, match: { path: /b }, service: s }\n');
    const ok = await fetch(`${gw.adminUrl}/reload`, { method: 'POST', headers: auth });
    expect(ok.status).toBe(200);
    expect((await fetch(`${gw.url}/a`)).status).toBe(404);
    expect((await fetch(`${gw.url}/b`)).status).toBe(200);

    writeFileSync(file, base + 'routes:\n  - { name: c, match: { path: /c }, service: missing }\n');
    const bad = await fetch(`${gw.adminUrl}/reload`, { method: 'POST', headers: auth });
    expect(bad.status).toBe(400);
    const body = (await bad.json()) as { code: string; errors: string[] };
    expect(body.code).toBe('invalid_config');
    expect(body.errors[0]).toMatch(/gatehouse\.yaml:6:37: routes\[0\]\.service: .*"missing"/);
    expect((await fetch(`${gw.url}/b`)).status).toBe(200);

    expect((await fetch(`${gw.adminUrl}/reload`, { method: 'POST' })).status).toBe(401);
  });

  it('serves its OpenAPI document', async () => {
    upstream = await startUpstream();
    gw = await startGateway(config(upstream.url));
    const doc = (await (await fetch(`${gw.adminUrl}/openapi.json`)).json()) as {
      openapi: string;
      paths: Record<string, unknown>;
    };
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/livez', '/readyz', '/reload']));
  });
});

describe('shutdown with an open WebSocket', () => {
  it('closes upgraded connections when the drain timeout expires', { timeout: 5000 }, async () => {
    const { connect } = await import('node:net');
    upstream = await startUpstream();
    gw = await startGateway(config(upstream.url, '200ms'));
    const socket = connect(gw.gateway.port, '127.0.0.1');
    const upgraded = new Promise<void>((resolve) => socket.once('data', () => resolve()));
    socket.write('GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n');
    await upgraded;
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
    await gw.gateway.shutdown();
    await closed;
    expect(socket.destroyed).toBe(true);
  });
});
