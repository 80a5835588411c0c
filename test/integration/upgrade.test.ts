/**
 * Connection upgrades (WebSocket): routed like any request, then bytes flow both ways between
 * the client and the upstream. Refusals and failures are answered, never left hanging.
 */
import type { Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import {
  AUDIENCE,
  claims,
  ISSUER,
  JwksServer,
  makeKey,
  rawToken,
  sign,
  type TestKey,
} from '../helpers/jwks.js';
import { connectionCount, dataServer, deferred, expectProblem } from '../helpers/http-client.js';
import { RawSession, parseResponse } from '../helpers/raw-session.js';
import { closedPort, startRawUpstream, startUpstream, type Upstream } from '../helpers/upstream.js';

const upgradeRequest = (path: string, extra = '') =>
  `GET ${path} HTTP/1.1\r\nHost: chat.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
  `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${extra}\r\n`;

describe('WebSocket upgrades', () => {
  let ws: Upstream;
  let refuser: Awaited<ReturnType<typeof startRawUpstream>>;
  let gw: TestGateway;
  const sessions: RawSession[] = [];
  let upstreamSocket = deferred<Socket>();
  const open = async () => {
    const s = await RawSession.open(gw.gateway.port);
    sessions.push(s);
    return s;
  };

  beforeAll(async () => {
    ws = await startUpstream();
    ws.server.on('upgrade', (_req, socket: Socket) => upstreamSocket.resolve(socket));
    refuser = await startRawUpstream((socket) => {
      let head = '';
      socket.on('data', (d: Buffer) => {
        head += d.toString('latin1');
        if (head.includes('\r\n\r\n'))
          socket.end('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nnope');
      });
    });
    gw = await startGateway(`
services:
  ws: { targets: ["${ws.url}"] }
  refuser: { targets: ["${refuser.url}"] }
  down: { targets: ["http://127.0.0.1:${await closedPort()}"] }
routes:
  - { name: ws, match: { path: /ws/** }, service: ws, stripPrefix: /ws }
  - { name: refuser, match: { path: /refuse/** }, service: refuser }
  - { name: down, match: { path: /down/** }, service: down }
`);
  });
  afterEach(() => {
    for (const s of sessions.splice(0)) s.destroy();
    upstreamSocket = deferred<Socket>();
  });
  afterAll(async () => {
    await gw.close();
    await ws.close();
    await refuser.close();
  });

  it('relays the 101 and then bytes both ways', async () => {
    const s = await open();
    s.write(upgradeRequest('/ws/chat?room=1', 'X-Request-Id: ws-1\r\n'));
    const head = parseResponse(await s.waitFor('\r\n\r\n'), { noBody: true })!;
    expect(head.status).toBe(101);
    expect(head.headers.upgrade).toBe('websocket');
    expect(head.headers.connection?.toLowerCase()).toBe('upgrade');
    expect(head.headers['x-request-id']).toBe('ws-1');
    s.take();
    s.write('ping-1');
    await s.waitFor('ping-1');
    const binary = Buffer.from([0x81, 0x85, 0x00, 0xff, 0x10, 0x0d, 0x0a]);
    s.take();
    s.write(binary);
    await s.waitFor((t) => t === binary.toString('latin1'));
  });

  it('sends the upstream the routed path and the usual headers', async () => {
    const s = await open();
    s.write(
      upgradeRequest(
        '/ws/chat?room=2',
        'X-Forwarded-For: 203.0.113.9\r\nX-Consumer-Id: admin\r\nKeep-Alive: timeout=5\r\nX-Forwarded-Proto: https\r\n',
      ),
    );
    await s.waitFor('\r\n\r\n');
    const got = ws.received.at(-1)!;
    expect(got.url).toBe('/chat?room=2');
    expect(got.headers.upgrade).toBe('websocket');
    expect(got.headers.connection?.toLowerCase()).toBe('upgrade');
    expect(got.headers['sec-websocket-key']).toBe('dGhlIHNhbXBsZSBub25jZQ==');
    expect(got.headers['sec-websocket-version']).toBe('13');
    expect(got.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(got.headers['x-forwarded-for']).toBe('127.0.0.1');
    expect(got.headers['x-forwarded-proto']).toBe('http');
    expect(got.headers['x-forwarded-host']).toBe('chat.example');
    expect(got.headers['x-consumer-id']).toBeUndefined();
    expect(got.headers['keep-alive']).toBeUndefined();
  });

  it('delivers bytes the client sent right behind the upgrade request', async () => {
    const s = await open();
    s.write(upgradeRequest('/ws/chat') + 'early-bytes');
    await s.waitFor('\r\n\r\n');
    await s.waitFor((t) => t.endsWith('\r\n\r\nearly-bytes'));
  });

  it('closing the client closes the upstream side', async () => {
    const s = await open();
    s.write(upgradeRequest('/ws/chat'));
    await s.waitFor('\r\n\r\n');
    const up = await upstreamSocket.promise;
    const upClosed = new Promise((resolve) => up.once('close', resolve));
    s.destroy();
    await upClosed;
  });

  it('closing the upstream side closes the client', async () => {
    const s = await open();
    s.write(upgradeRequest('/ws/chat'));
    await s.waitFor('\r\n\r\n');
    (await upstreamSocket.promise).destroy();
    await s.waitClosed();
    expect(s.closed).toBe(true);
  });

  it('an upgrade to an unknown route gets a 404 no_route problem', async () => {
    const s = await open();
    s.write(upgradeRequest('/nowhere', 'X-Request-Id: lost-1\r\n'));
    const res = parseResponse(await s.waitFor((t) => parseResponse(t) !== null))!;
    const p = expectProblem({ status: res.status, headers: res.headers, body: res.body }, 404, 'no_route');
    expect(p.instance).toBe('tag:gatehouse.dev,2026:request:lost-1');
    await s.waitClosed();
  });

  it("an upstream's refusal is relayed, then the connection closes", async () => {
    const s = await open();
    s.write(upgradeRequest('/refuse/x'));
    await s.waitClosed();
    const res = parseResponse(s.received)!;
    expect(res.status).toBe(403);
    expect(res.headers['x-request-id']).toBeDefined();
    expect(s.received.endsWith('\r\n\r\nnope')).toBe(true);
  });

  it('an unreachable upstream gets a 502 upstream_error problem', async () => {
    const s = await open();
    s.write(upgradeRequest('/down/x'));
    const res = parseResponse(await s.waitFor((t) => parseResponse(t) !== null))!;
    expectProblem({ status: res.status, headers: res.headers, body: res.body }, 502, 'upstream_error');
    await s.waitClosed();
  });

  it('leaves no client connection behind', async () => {
    for (const s of sessions.splice(0)) s.destroy();
    await vi.waitFor(async () => expect(await connectionCount(dataServer(gw))).toBe(0));
  });
});

describe('authenticated upgrades', () => {
  let ws: Upstream;
  let jwks: JwksServer;
  let key: TestKey;
  let gw: TestGateway;
  const sessions: RawSession[] = [];
  const open = async () => {
    const s = await RawSession.open(gw.gateway.port);
    sessions.push(s);
    return s;
  };
  const values = (raw: readonly string[], name: string) =>
    raw.filter((_v, i) => i % 2 === 1 && raw[i - 1]?.toLowerCase() === name);

  beforeAll(async () => {
    ws = await startUpstream();
    key = await makeKey('ws-1');
    jwks = await JwksServer.start([key]);
    gw = await startGateway(`
auth:
  jwt: { algorithms: [RS256], issuer: "${ISSUER}", audience: ${AUDIENCE}, jwksUrl: "${jwks.url}" }
rbac: { roles: { chatter: [chat:join] } }
services:
  ws: { targets: ["${ws.url}"] }
routes:
  - { name: chat, match: { path: /chat/** }, service: ws, auth: [jwt], permissions: [chat:join], rateLimit: "off" }
`);
  });
  afterEach(() => {
    for (const s of sessions.splice(0)) s.destroy();
  });
  afterAll(async () => {
    await gw.close();
    await ws.close();
    await jwks.close();
  });

  it('the upstream gets the same identity and credential as a plain request would', async () => {
    const token = await sign(key, { sub: 'carol', roles: ['chatter'], tier: 'pro' });
    const s = await open();
    s.write(
      upgradeRequest(
        '/chat/room-1',
        `Authorization: Bearer ${token}\r\nX-Consumer-Id: admin\r\nX-Consumer-Roles: admin\r\n`,
      ),
    );
    const head = parseResponse(await s.waitFor('\r\n\r\n'), { noBody: true })!;
    expect(head.status).toBe(101);
    const raw = ws.received.at(-1)?.rawHeaders ?? [];
    expect(values(raw, 'x-consumer-id')).toEqual(['carol']);
    expect(values(raw, 'x-consumer-tier')).toEqual(['pro']);
    expect(values(raw, 'x-consumer-roles')).toEqual(['chatter']);
    expect(values(raw, 'authorization')).toEqual([`Bearer ${token}`]);
    // and the tunnel works
    s.take();
    s.write('hello');
    await s.waitFor('hello');
  });

  it('an upgrade carrying a second, forged Authorization is refused before the upstream', async () => {
    const token = await sign(key, { sub: 'carol', roles: ['chatter'] });
    const forged = rawToken({ alg: 'none' }, claims({ sub: 'root', roles: ['chatter'] }));
    const before = ws.received.length;
    const s = await open();
    s.write(
      upgradeRequest('/chat/room-1', `Authorization: Bearer ${token}\r\nauthorization: Bearer ${forged}\r\n`),
    );
    const res = parseResponse(await s.waitFor((t) => parseResponse(t) !== null))!;
    expectProblem({ status: res.status, headers: res.headers, body: res.body }, 400, 'bad_request');
    await s.waitClosed();
    expect(ws.received.length).toBe(before);
  });

  it('an unauthenticated upgrade gets 401 and never reaches the upstream', async () => {
    const before = ws.received.length;
    const s = await open();
    s.write(upgradeRequest('/chat/room-1', 'X-Consumer-Id: carol\r\n'));
    const res = parseResponse(await s.waitFor((t) => parseResponse(t) !== null))!;
    expectProblem({ status: res.status, headers: res.headers, body: res.body }, 401, 'unauthenticated');
    await s.waitClosed();
    expect(ws.received.length).toBe(before);
  });
});
