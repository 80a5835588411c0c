/**
 * HTTP/2 upstreams through the real gateway: `protocol: h2` (TLS, ALPN) and `h2c` (cleartext,
 * prior knowledge), and gRPC proxied to a real @grpc/grpc-js server with its trailers passed
 * through to an HTTP/1.1 client (chunked trailers); gateway errors on gRPC requests answered as
 * gRPC status (trailers-only), not problem+json.
 */
import { createSecureServer, createServer, type Http2SecureServer, type Http2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { grpcFrame, grpcMessages, startGrpcServer, type GrpcTestServer } from '../helpers/grpc.js';
import { request, type Reply } from '../helpers/http-client.js';
import { closedPort, startRawUpstream } from '../helpers/upstream.js';
import { makeTestPki, type TestPki } from '../helpers/test-certs.js';

type H2Upstream = {
  url: string;
  /** per request: the HTTP version, method and body the server got */
  seen: Array<{ version: string; method: string; body: string; authority: string | undefined }>;
  close(): Promise<void>;
};

async function startH2Upstream(server: Http2Server | Http2SecureServer, scheme: string): Promise<H2Upstream> {
  const seen: H2Upstream['seen'] = [];
  server.on('request', (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({
        version: req.httpVersion,
        method: req.method,
        body: Buffer.concat(chunks).toString(),
        authority: req.headers[':authority'],
      });
      res.setHeader('content-type', 'text/plain');
      res.end(`h${req.httpVersion}`);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const sessions = new Set<{ destroy(): void }>();
  server.on('session', (s) => sessions.add(s));
  return {
    url: `${scheme}://127.0.0.1:${port}`,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sessions) s.destroy();
        server.close(() => resolve());
      }),
  };
}

const GRPC = { 'content-type': 'application/grpc', te: 'trailers' };

/** the gRPC status of an answer: in the trailers, or in the headers of a trailers-only answer */
const grpcStatus = (res: Reply) => res.trailers['grpc-status'] ?? res.headers['grpc-status'];
const grpcMessage = (res: Reply) =>
  decodeURIComponent(String(res.trailers['grpc-message'] ?? res.headers['grpc-message']));

describe('HTTP/2 upstreams and gRPC', () => {
  let pki: TestPki;
  let tlsH2: H2Upstream;
  let h2c: H2Upstream;
  let grpc: GrpcTestServer;
  let raw: { url: string; close(): Promise<void> };
  let gw: TestGateway;

  beforeAll(async () => {
    pki = makeTestPki();
    tlsH2 = await startH2Upstream(createSecureServer({ cert: pki.serverCert, key: pki.serverKey }), 'https');
    h2c = await startH2Upstream(createServer(), 'http');
    grpc = await startGrpcServer();
    const dead = await closedPort();
    // an HTTP/1.1 upstream whose trailers try to forge framing and gateway headers
    raw = await startRawUpstream((socket) => {
      socket.once('data', () =>
        socket.end(
          'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n\r\n' +
            '5\r\nhello\r\n0\r\nx-checksum: abc\r\nx-request-id: forged\r\n' +
            'host: evil.example\r\nconnection: close\r\n\r\n',
        ),
      );
    });
    gw = await startGateway(`
services:
  h2: { targets: ["${tlsH2.url}"], protocol: h2, tls: { ca: "${pki.files.ca}" } }
  h2c: { targets: ["${h2c.url}"], protocol: h2c }
  grpc: { targets: ["http://127.0.0.1:${grpc.port}"], protocol: h2c }
  dead: { targets: ["http://127.0.0.1:${dead}"], protocol: h2c, retry: { attempts: 1 } }
  raw: { targets: ["${raw.url}"] }
routes:
  - { name: raw, match: { path: /raw/** }, service: raw }
  - { name: h2, match: { path: /h2/** }, service: h2, stripPrefix: /h2 }
  - { name: h2c, match: { path: /h2c/** }, service: h2c, stripPrefix: /h2c }
  - { name: grpc, match: { path: /test.Echo/** }, service: grpc }
  - { name: dead, match: { path: /dead.Echo/** }, service: dead, stripPrefix: /dead.Echo }
  - name: limited
    match: { path: /limited.Echo/** }
    service: grpc
    rateLimit: ip
  - name: private
    match: { path: /private.Echo/** }
    service: grpc
    auth: [jwt]
    rateLimit: "off"
auth:
  jwt: { algorithms: [ES256], publicKeys: ["${pki.files.ca}"] }
rateLimit:
  tiers:
    anonymous: { limits: [{ requests: 1, per: 1m }] }
`);
  });
  afterAll(async () => {
    await gw?.close();
    await Promise.all([tlsH2?.close(), h2c?.close(), grpc?.close(), raw?.close()]);
    pki?.remove();
  });

  it('speaks HTTP/2 over TLS to a protocol: h2 service (ALPN)', async () => {
    const res = await request(`${gw.url}/h2/x`);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('h2.0');
    const posted = await request(`${gw.url}/h2/upload`, { method: 'POST', body: 'a body' });
    expect(posted.status).toBe(200);
    expect(tlsH2.seen.at(-1)).toMatchObject({ version: '2.0', method: 'POST', body: 'a body' });
  });

  it('speaks cleartext HTTP/2 (prior knowledge) to a protocol: h2c service', async () => {
    const res = await request(`${gw.url}/h2c/x`, { headers: { host: 'api.example' } });
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('h2.0');
    // :authority is the target's, as Host is over HTTP/1.1 (the client's is in X-Forwarded-Host)
    expect(h2c.seen.at(-1)).toMatchObject({
      version: '2.0',
      method: 'GET',
      authority: new URL(h2c.url).host,
    });
  });

  it('proxies a unary gRPC call with its trailers to an HTTP/1.1 client', async () => {
    const res = await request(`${gw.url}/test.Echo/Unary`, {
      method: 'POST',
      headers: GRPC,
      body: grpcFrame('hi'),
    });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/grpc/);
    expect(res.headers['transfer-encoding']).toBe('chunked');
    expect(grpcMessages(res.body)).toEqual(['echo: hi']);
    expect(res.trailers['grpc-status']).toBe('0');
  });

  it('proxies a server-streaming gRPC call', async () => {
    const res = await request(`${gw.url}/test.Echo/ServerStream`, {
      method: 'POST',
      headers: GRPC,
      body: grpcFrame('3'),
    });
    expect(grpcMessages(res.body)).toEqual(['message 0', 'message 1', 'message 2']);
    expect(res.trailers['grpc-status']).toBe('0');
  });

  it("passes the server's error status through", async () => {
    const res = await request(`${gw.url}/test.Echo/Fail`, {
      method: 'POST',
      headers: GRPC,
      body: grpcFrame('5:no such order'),
    });
    expect(res.status).toBe(200);
    expect(grpcStatus(res)).toBe('5');
    expect(grpcMessage(res)).toBe('no such order');
  });

  const call = (path: string) =>
    request(`${gw.url}${path}`, { method: 'POST', headers: GRPC, body: grpcFrame('x') });

  it('answers gateway errors on gRPC requests as gRPC status, not problem+json', async () => {
    const noRoute = await call('/nowhere.Echo/Unary');
    expect(noRoute.status).toBe(200);
    expect(noRoute.headers['content-type']).toBe('application/grpc');
    expect(noRoute.body.length).toBe(0);
    expect(grpcStatus(noRoute)).toBe('12'); // UNIMPLEMENTED
    expect(grpcMessage(noRoute)).toMatch(/^no_route: /);

    expect(grpcStatus(await call('/private.Echo/Unary'))).toBe('16'); // UNAUTHENTICATED
    expect(grpcStatus(await call('/dead.Echo/Unary'))).toBe('14'); // UNAVAILABLE

    expect(grpcStatus(await call('/limited.Echo/Unary'))).toBe('12'); // passed the limit: the server has no such method
    const limited = await call('/limited.Echo/Unary');
    expect(grpcStatus(limited)).toBe('8'); // RESOURCE_EXHAUSTED
    expect(limited.headers['retry-after']).toMatch(/^\d+$/);
  });

  it("passes an HTTP/1.1 upstream's trailers on, but none that would forge framing or our headers", async () => {
    const res = await request(`${gw.url}/raw/x`, { headers: { te: 'trailers' } });
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('hello');
    expect(res.trailers).toEqual({ 'x-checksum': 'abc' });
    expect(res.headers['x-request-id']).not.toBe('forged');
  });

  it('answers plain requests on the same routes with problem+json', async () => {
    const res = await request(`${gw.url}/nowhere/x`);
    expect(res.status).toBe(404);
    expect(res.headers['content-type']).toBe('application/problem+json');
  });
});
