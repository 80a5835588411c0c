/**
 * Upgrade requests are a way around routing: after a 101 the client talks to the upstream
 * directly. Only WebSocket is relayed, the upgrade request gets the same checks as any other,
 * and when the upstream refuses, nothing the client sent after it reaches the upstream.
 */
import type { Socket } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { exchange, noConnectionsLeft, RawClient } from '../helpers/hostile.js';
import { startRawUpstream } from '../helpers/upstream.js';

type RawUpstream = Awaited<ReturnType<typeof startRawUpstream>>;

/** Every byte the upstream received, across connections. */
let wire: string;
let upstream: RawUpstream;
let gw: TestGateway;

const upgrade = (path: string, protocol: string, extra = '') =>
  `GET ${path} HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade\r\nUpgrade: ${protocol}\r\n` +
  `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${extra}\r\n`;

beforeAll(async () => {
  wire = '';
  // An upstream that would take any upgrade (h2c included) if asked, except on /refuse.
  upstream = await startRawUpstream((socket: Socket) => {
    let head = '';
    socket.on('data', (d: Buffer) => {
      wire += d.toString('latin1');
      if (head.includes('\r\n\r\n')) return; // after the head: tunnel bytes, recorded only
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      if (!/\r\nupgrade:/i.test(head)) {
        socket.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok'); // a plain request
      } else if (head.startsWith('GET /refuse')) {
        socket.write('HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n'); // and stays open
      } else {
        const proto = /\r\nupgrade: ([^\r]*)/i.exec(head)?.[1] ?? 'x';
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${proto}\r\n\r\n`);
      }
    });
  });
  gw = await startGateway(`
services:
  up: { targets: ["${upstream.url}"] }
routes:
  - { name: public, match: { path: /public/** }, service: up }
  - { name: refuse, match: { path: /refuse/** }, service: up }
`);
});

afterAll(async () => {
  await gw.close();
  await upstream.close();
});

afterEach(async () => {
  await noConnectionsLeft(gw);
  wire = '';
});

describe('upgrades other than WebSocket are refused', () => {
  it.each(['h2c, websocket', 'websocket, h2c', 'TLS/1.0', 'foo'])(
    'Upgrade: %s → 400, nothing upstream',
    async (protocol) => {
      const { responses, closed } = await exchange(gw.gateway.port, upgrade('/public/x', protocol));
      expect(closed).toBe(true);
      expect(responses.map((r) => r.status)).toEqual([400]);
      expect(JSON.parse(responses[0]?.body ?? '')).toMatchObject({ code: 'bad_request' });
      expect(wire).toBe('');
    },
  );

  it.each(['h2c', 'H2C'])(
    'an Upgrade: %s offer is ignored: answered as HTTP/1.1, the connection then closes',
    async (protocol) => {
      const { responses, closed } = await exchange(
        gw.gateway.port,
        upgrade('/public/x', protocol, 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n'),
      );
      expect(closed).toBe(true);
      expect(responses.map((r) => r.status)).toEqual([200]);
      expect(wire).toMatch(/^GET \/public\/x HTTP\/1\.1\r\n/);
      expect(wire).not.toMatch(/upgrade|http2-settings/i);
    },
  );

  it('an h2c offer with a body: the body (Content-Length) goes upstream; a chunked one is refused', async () => {
    const offer = (framing: string, body: string) =>
      `POST /public/up HTTP/1.1\r\nHost: gw.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n` +
      `HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n${framing}\r\n${body}`;
    const sent = await exchange(gw.gateway.port, offer('Content-Length: 5\r\n', 'hello'));
    expect(sent.responses.map((r) => r.status)).toEqual([200]);
    await expect.poll(() => wire).toMatch(/\r\n\r\nhello$/);
    wire = '';
    const chunked = await exchange(
      gw.gateway.port,
      offer('Transfer-Encoding: chunked\r\n', '5\r\nhello\r\n0\r\n\r\n'),
    );
    expect(chunked.closed).toBe(true);
    expect(chunked.responses.map((r) => r.status)).toEqual([400]);
    expect(wire).toBe('');
  });

  it('an h2c preface sent after the offer never reaches the upstream', async () => {
    const { responses } = await exchange(
      gw.gateway.port,
      upgrade('/public/x', 'h2c', 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n') +
        'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
    );
    expect(responses.map((r) => r.status)).toEqual([200]);
    expect(wire).not.toMatch(/PRI|upgrade/i);
    expect(wire.match(/HTTP\/1\.1\r\n/g)).toHaveLength(1);
  });

  it('WebSocket (any case) is relayed', async () => {
    const client = await RawClient.open(gw.gateway.port);
    client.write(upgrade('/public/x', 'WebSocket'));
    await client.until((r) => r.includes('\r\n\r\n'));
    expect(client.received).toMatch(/^HTTP\/1\.1 101 /);
    client.destroy();
    expect(wire).toMatch(/^GET \/public\/x HTTP\/1\.1\r\n/);
  });
});

describe('the upgrade request is checked like any request', () => {
  it.each([
    ['an encoded slash', upgrade('/public/..%2fadmin', 'websocket')],
    ['a dot-dot escape', upgrade('/public/%2e%2e/admin', 'websocket')],
    ['two Host headers', upgrade('/public/x', 'websocket', 'Host: admin.internal\r\n')],
    [
      'a spoofed identity and a bad Host',
      upgrade('/public/x', 'websocket', 'X-Consumer-Id: admin\r\nHost: a b\r\n'),
    ],
  ])('%s: refused, nothing upstream', async (_name, payload) => {
    const { responses, closed } = await exchange(gw.gateway.port, payload);
    expect(closed).toBe(true);
    expect(responses).toHaveLength(1);
    expect(responses[0]?.status).toBeGreaterThanOrEqual(400);
    expect(responses[0]?.status).toBeLessThan(500);
    expect(wire).toBe('');
  });

  it('client-sent X-Consumer-* are not forwarded on an upgrade', async () => {
    const client = await RawClient.open(gw.gateway.port);
    client.write(upgrade('/public/x', 'websocket', 'X-Consumer-Id: admin\r\nX_Consumer_Roles: admin\r\n'));
    await client.until((r) => r.includes('\r\n\r\n'));
    client.destroy();
    expect(wire.toLowerCase()).not.toContain('consumer');
  });
});

describe('a refused upgrade is not a tunnel', () => {
  it('bytes sent with the upgrade request do not reach the upstream as a request', async () => {
    const client = await RawClient.open(gw.gateway.port);
    client.write(upgrade('/refuse/x', 'websocket') + 'GET /admin HTTP/1.1\r\nHost: gw.test\r\n\r\n');
    await client.waitClosed();
    client.destroy();
    expect(client.received).toMatch(/^HTTP\/1\.1 426 /);
    expect(wire.match(/ HTTP\/1\.1\r\n/g)).toHaveLength(1);
    expect(wire).not.toMatch(/\/admin/);
  });

  // Known bug (src/upstream/upgrade.ts, UpgradeRelay.onComplete and writeRawProblem on an
  // upgrade socket): bytes the client sends after the refusal sit unread in the socket, so its
  // 'end' never comes and the gateway keeps the socket forever (and a shutdown never ends).
  // Enable once the refused-upgrade socket is drained (resume) and destroyed after a linger.
  it('bytes sent after the refusal neither reach the upstream nor keep the socket open', async () => {
    const client = await RawClient.open(gw.gateway.port);
    client.write(upgrade('/refuse/x', 'websocket'));
    await client.until((r) => r.includes('\r\n\r\n'));
    expect(client.received).toMatch(/^HTTP\/1\.1 426 /);
    client.write('GET /admin HTTP/1.1\r\nHost: gw.test\r\n\r\n');
    await client.waitClosed();
    client.destroy();
    await noConnectionsLeft(gw);
    expect(wire).not.toMatch(/\/admin/);
  });
});
