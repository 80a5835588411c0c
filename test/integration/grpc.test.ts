/**
 * gRPC end to end through the real gateway, with @grpc/grpc-js on both sides: a grpc-js client
 * over HTTP/2 (cleartext h2c, and TLS with ALPN h2) to the gateway, which proxies to a real
 * grpc-js server over HTTP/2 (h2c, and TLS with the test CA). Unary and server-streaming calls,
 * the server's error status and metadata passed through, and the gateway's own errors answered
 * as gRPC status (UNAUTHENTICATED, RESOURCE_EXHAUSTED, UNIMPLEMENTED, UNAVAILABLE).
 */
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { echoClient, startGrpcServer, unary, type EchoClient, type GrpcTestServer } from '../helpers/grpc.js';
import { closedPort } from '../helpers/upstream.js';
import { makeTestPki, type TestPki } from '../helpers/test-certs.js';

const streamed = (client: EchoClient, n: number) =>
  new Promise<{ messages: string[]; status: grpc.StatusObject }>((resolve, reject) => {
    const messages: string[] = [];
    const call = client.ServerStream(String(n));
    let status: grpc.StatusObject | null = null;
    let ended = false;
    const done = () => {
      if (status && ended) resolve({ messages, status });
    };
    call.on('data', (m: string) => messages.push(m));
    call.on('status', (s: grpc.StatusObject) => {
      status = s;
      done();
    });
    call.on('end', () => {
      ended = true;
      done();
    });
    call.on('error', reject);
  });

describe('gRPC through the gateway (h2c both ways)', () => {
  let pki: TestPki;
  let server: GrpcTestServer;
  let gw: TestGateway;
  let client: EchoClient;
  const clients: EchoClient[] = [];
  const clientFor = (pkg: string) => {
    const c = echoClient(`127.0.0.1:${gw.gateway.port}`, grpc.credentials.createInsecure(), pkg);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    pki = makeTestPki();
    server = await startGrpcServer();
    const dead = await closedPort();
    gw = await startGateway(`
listen: { host: 127.0.0.1, port: 0, http2: { cleartext: true } }
services:
  grpc: { targets: ["http://127.0.0.1:${server.port}"], protocol: h2c }
  dead: { targets: ["http://127.0.0.1:${dead}"], protocol: h2c, retry: { attempts: 1 } }
routes:
  - { name: echo, match: { path: /test.Echo/** }, service: grpc }
  - { name: dead, match: { path: /dead.Echo/** }, service: dead }
  - { name: limited, match: { path: /limited.Echo/** }, service: grpc, rateLimit: ip }
  - { name: private, match: { path: /private.Echo/** }, service: grpc, auth: [jwt], rateLimit: "off" }
auth:
  jwt: { algorithms: [ES256], publicKeys: ["${pki.files.ca}"] }
rateLimit:
  tiers:
    anonymous: { limits: [{ requests: 1, per: 1m }] }
`);
    client = clientFor('test.Echo');
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await gw?.close();
    await server?.close();
    pki?.remove();
  });

  it('proxies a unary call, with the request metadata', async () => {
    const metadata = new grpc.Metadata();
    metadata.set('x-tenant', 'acme');
    const res = await unary(client, 'hello', metadata);
    expect(res).toEqual({ ok: true, value: 'echo: hello' });
    const call = server.calls.at(-1);
    expect(call?.method).toBe('Unary');
    expect(call?.metadata['x-tenant']).toBe('acme');
    expect(typeof call?.metadata['x-request-id']).toBe('string');
  });

  it('proxies a server-streaming call to its end, with status OK in the trailers', async () => {
    const { messages, status } = await streamed(client, 50);
    expect(messages).toHaveLength(50);
    expect(messages[49]).toBe('message 49');
    expect(status.code).toBe(grpc.status.OK);
  });

  it("passes the server's error status and message through", async () => {
    const res = await unary(client, `${grpc.status.NOT_FOUND}:no order 42 (100% sure)`, undefined, 'Fail');
    expect(res.ok).toBe(false);
    if (res.ok) return;
    expect(res.error.code).toBe(grpc.status.NOT_FOUND);
    expect(res.error.details).toBe('no order 42 (100% sure)');
  });

  it("answers the gateway's own errors as gRPC status", async () => {
    const noAuth = await unary(clientFor('private.Echo'), 'x');
    expect(noAuth.ok === false && noAuth.error.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(noAuth.ok === false && noAuth.error.details).toMatch(/^unauthenticated: /);

    const noRoute = await unary(clientFor('nowhere.Echo'), 'x');
    expect(noRoute.ok === false && noRoute.error.code).toBe(grpc.status.UNIMPLEMENTED);

    const dead = await unary(clientFor('dead.Echo'), 'x');
    expect(dead.ok === false && dead.error.code).toBe(grpc.status.UNAVAILABLE);

    const limited = clientFor('limited.Echo');
    const first = await unary(limited, 'x'); // let through; the server has no limited.Echo
    expect(first.ok === false && first.error.code).toBe(grpc.status.UNIMPLEMENTED);
    const second = await unary(limited, 'x');
    expect(second.ok === false && second.error.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(second.ok === false && second.error.metadata.get('retry-after')[0]).toMatch(/^\d+$/);
  });
});

describe('gRPC through the gateway (TLS both ways)', () => {
  let pki: TestPki;
  let server: GrpcTestServer;
  let gw: TestGateway;
  let client: EchoClient;

  beforeAll(async () => {
    pki = makeTestPki();
    server = await startGrpcServer(
      grpc.ServerCredentials.createSsl(null, [{ cert_chain: pki.serverCert, private_key: pki.serverKey }]),
    );
    const f = pki.files;
    gw = await startGateway(`
listen: { host: 127.0.0.1, port: 0, tls: { cert: "${f.serverCert}", key: "${f.serverKey}" } }
services:
  grpc: { targets: ["https://127.0.0.1:${server.port}"], protocol: h2, tls: { ca: "${f.ca}" } }
routes:
  - { name: echo, match: { path: /test.Echo/** }, service: grpc }
`);
    client = echoClient(`localhost:${gw.gateway.port}`, grpc.credentials.createSsl(pki.ca));
  });
  afterAll(async () => {
    client?.close();
    await gw?.close();
    await server?.close();
    pki?.remove();
  });

  it('proxies unary and streaming calls from a TLS client to a TLS gRPC server', async () => {
    expect(await unary(client, 'secure')).toEqual({ ok: true, value: 'echo: secure' });
    const { messages, status } = await streamed(client, 3);
    expect(messages).toEqual(['message 0', 'message 1', 'message 2']);
    expect(status.code).toBe(grpc.status.OK);
    const failed = await unary(client, `${grpc.status.PERMISSION_DENIED}:not yours`, undefined, 'Fail');
    expect(failed.ok === false && failed.error.code).toBe(grpc.status.PERMISSION_DENIED);
  });
});
