/**
 * The known HTTP/2 floods against the gateway, each from a hostile client: the session is
 * closed by a limit, the gateway keeps serving everyone else, and memory stays bounded.
 * Rapid reset runs over TLS with node:http2; the floods node:http2 cannot produce (CONTINUATION,
 * unacknowledged SETTINGS and PING) use raw frames on the cleartext h2c port, which is the same
 * HTTP/2 server code with the same limits.
 */
import { connect, constants } from 'node:http2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestPki } from '../helpers/certificates.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import {
  END_HEADERS,
  END_STREAM,
  FrameType,
  RawH2,
  frame,
  literal,
  requestBlock,
} from '../helpers/h2-frames.js';
import { ProtocolClients } from '../helpers/protocol-clients.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

let pki: TestPki;
let upstream: Upstream;
let gw: TestGateway;
let clients: ProtocolClients;

beforeAll(async () => {
  pki = new TestPki();
  const server = pki.server(['localhost']);
  upstream = await startUpstream();
  gw = await startGateway(`
listen:
  host: 127.0.0.1
  port: 0
  tls: { cert: "${server.cert}", key: "${server.key}" }
  plain: { port: 0, mode: serve }
  http2: { cleartext: true, maxResets: 50, resetWindow: 10s, maxConcurrentStreams: 100 }
services:
  echo: { targets: ["${upstream.url}"] }
routes:
  - { name: public, match: { path: /public/** }, service: echo }
`);
  clients = new ProtocolClients(
    { tls: gw.gateway.port, plain: gw.gateway.plainPort as number },
    { ca: pki.ca.certPem },
  );
});

afterAll(async () => {
  clients?.close();
  await gw?.close();
  await upstream?.close();
  pki?.remove();
});

/** Everyone else is still served, over both HTTP/2 ways, on new connections. */
async function stillServing(): Promise<void> {
  const fresh = new ProtocolClients(
    { tls: gw.gateway.port, plain: gw.gateway.plainPort as number },
    { ca: pki.ca.certPem },
  );
  try {
    expect((await fresh.send('h2', '/public/ok')).status).toBe(200);
    expect((await fresh.send('h2c', '/public/ok')).status).toBe(200);
    expect((await fresh.send('https/1.1', '/public/ok')).status).toBe(200);
  } finally {
    fresh.close();
  }
}

async function closedFor(reason: string): Promise<number> {
  const text = await (await fetch(`${gw.adminUrl}/metrics`)).text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith(`gatehouse_http2_sessions_closed_total{reason="${reason}"}`));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('rapid reset (CVE-2023-44487)', () => {
  it('a client that opens and resets streams in a loop loses its connection; a normal one is untouched', async () => {
    const bystander = clients.session('h2');
    expect((await clients.sendH2(bystander, '/public/before')).status).toBe(200);
    const baseline = await gw.gateway.connectionCount();
    const before = await closedFor('rapid_reset');
    const session = connect(`https://127.0.0.1:${gw.gateway.port}`, {
      ca: pki.ca.certPem,
      servername: 'localhost',
    });
    session.on('error', () => undefined);
    await new Promise<void>((resolve) => session.once('connect', () => resolve()));
    expect(await gw.gateway.connectionCount()).toBe(baseline + 1);
    try {
      // well past the limit (50 in 10 s); the loop stops if the session is seen to go
      for (let i = 0; i < 2000 && !session.destroyed && !session.closed; i++) {
        const stream = session.request({ ':path': `/public/r${i}` });
        stream.on('error', () => undefined);
        stream.close(constants.NGHTTP2_CANCEL);
        if (i % 20 === 19) await new Promise((r) => setImmediate(r));
      }
      // the gateway closed the attacker's connection (GOAWAY ENHANCE_YOUR_CALM, then the socket)
      await expect.poll(() => closedFor('rapid_reset'), { timeout: 10_000 }).toBe(before + 1);
      await expect.poll(() => gw.gateway.connectionCount(), { timeout: 10_000 }).toBe(baseline);
    } finally {
      session.destroy();
    }
    // the other client's session was not touched
    expect(bystander.destroyed).toBe(false);
    expect((await clients.sendH2(bystander, '/public/after')).status).toBe(200);
    await stillServing();
  });

  it('over h2c the client reads the GOAWAY: ENHANCE_YOUR_CALM', async () => {
    const session = connect(`http://127.0.0.1:${gw.gateway.plainPort as number}`);
    session.on('error', () => undefined);
    const goaways: number[] = [];
    session.on('goaway', (code: number) => goaways.push(code));
    const closed = new Promise<void>((resolve) => session.on('close', () => resolve()));
    await new Promise<void>((resolve) => session.once('connect', () => resolve()));
    let sent = 0;
    for (let i = 0; i < 2000 && !session.destroyed && !session.closed; i++) {
      try {
        const stream = session.request({ ':path': `/public/c${i}` });
        stream.on('error', () => undefined);
        stream.close(constants.NGHTTP2_CANCEL);
        sent++;
      } catch {
        break; // the session went away meanwhile
      }
      if (i % 20 === 19) await new Promise((r) => setImmediate(r));
    }
    await closed;
    expect(goaways[0]).toBe(constants.NGHTTP2_ENHANCE_YOUR_CALM);
    expect(sent).toBeLessThan(2000);
  });

  it('resets below the limit are a client’s right: the session stays', async () => {
    const session = connect(`https://127.0.0.1:${gw.gateway.port}`, {
      ca: pki.ca.certPem,
      servername: 'localhost',
    });
    session.on('error', () => undefined);
    try {
      for (let i = 0; i < 30; i++) {
        const stream = session.request({ ':path': `/public/r${i}` });
        stream.on('error', () => undefined);
        stream.close(constants.NGHTTP2_CANCEL);
      }
      expect((await clients.sendH2(session, '/public/still')).status).toBe(200);
      expect(session.destroyed).toBe(false);
    } finally {
      session.close();
    }
  });
});

describe('CONTINUATION flood', () => {
  it('a header block that never ends closes the session before much is sent', async () => {
    const raw = await RawH2.open(gw.gateway.plainPort as number);
    try {
      expect(
        await raw.write(frame(FrameType.HEADERS, END_STREAM, 1, requestBlock('/public/x', 'gw.test'))),
      ).toBe(true);
      const junk = Buffer.concat(
        Array.from({ length: 40 }, (_, i) => literal(`x-junk-${i}`, 'v'.repeat(100))),
      );
      let bytes = 0;
      for (let i = 0; i < 10_000; i++) {
        if (!(await raw.write(frame(FrameType.CONTINUATION, 0, 1, junk)))) break;
        bytes += junk.length + 9;
      }
      await expect.poll(() => raw.closed, { timeout: 5000 }).toBe(true);
      // refused long before the 46 MB the client meant to send
      expect(bytes).toBeLessThan(4 * 1024 * 1024);
      expect(upstream.received.some((r) => r.url === '/public/x')).toBe(false);
    } finally {
      raw.destroy();
    }
    await stillServing();
  });

  it('empty CONTINUATION frames without end (the 2024 variant) close the session too', async () => {
    const raw = await RawH2.open(gw.gateway.plainPort as number);
    try {
      await raw.write(frame(FrameType.HEADERS, 0, 1, requestBlock('/public/y', 'gw.test')));
      const batch = Buffer.concat(Array.from({ length: 1000 }, () => frame(FrameType.CONTINUATION, 0, 1)));
      for (let i = 0; i < 1000; i++) if (!(await raw.write(batch))) break;
      await expect.poll(() => raw.closed, { timeout: 5000 }).toBe(true);
    } finally {
      raw.destroy();
    }
    await stillServing();
  });
});

describe('SETTINGS and PING floods', () => {
  it.each([
    ['SETTINGS', () => frame(FrameType.SETTINGS, 0, 0)],
    ['PING', () => frame(FrameType.PING, 0, 0, Buffer.alloc(8, 7))],
  ])(
    '%s frames sent without reading the acknowledgements: the session is closed, memory stays bounded',
    async (_name, make) => {
      const rssBefore = process.memoryUsage().rss;
      const raw = await RawH2.open(gw.gateway.plainPort as number);
      raw.socket.pause(); // never read: the acknowledgements queue up on the gateway's side
      try {
        const batch = Buffer.concat(Array.from({ length: 10_000 }, make));
        let sent = 0;
        for (let i = 0; i < 2000; i++) {
          if (!(await raw.write(batch))) break;
          sent += 10_000;
        }
        expect(sent).toBeLessThan(20_000_000);
        await expect.poll(() => raw.socket.destroyed || raw.closed, { timeout: 5000 }).toBe(true);
        // what the gateway held for this client is gone with it (a generous bound: the test
        // process holds the client's buffers too)
        expect(process.memoryUsage().rss - rssBefore).toBeLessThan(200 * 1024 * 1024);
      } finally {
        raw.destroy();
      }
      await stillServing();
      expect(await closedFor('flood')).toBeGreaterThanOrEqual(1);
    },
  );
});

describe('malformed requests', () => {
  it.each([
    ['a connection-specific header', [['connection', 'keep-alive']]],
    ['te other than trailers', [['te', 'gzip']]],
    ['an upper-case name', [['X-Upper', '1']]],
    [
      'a pseudo-header after a regular one',
      [
        ['x-a', '1'],
        [':status', '200'],
      ],
    ],
  ] as Array<[string, Array<[string, string]>]>)(
    '%s: the stream is reset, nothing goes upstream',
    async (_name, extra) => {
      const raw = await RawH2.open(gw.gateway.plainPort as number);
      try {
        await raw.write(
          frame(
            FrameType.HEADERS,
            END_STREAM | END_HEADERS,
            1,
            requestBlock('/public/malformed', 'gw.test', extra),
          ),
        );
        await expect
          .poll(() =>
            raw.frames.some(
              (f) => (f.type === FrameType.RST_STREAM && f.stream === 1) || f.type === FrameType.GOAWAY,
            ),
          )
          .toBe(true);
        expect(raw.frames.some((f) => f.type === FrameType.HEADERS && f.stream === 1)).toBe(false);
        expect(upstream.received.some((r) => r.url === '/public/malformed')).toBe(false);
      } finally {
        raw.destroy();
      }
    },
  );

  it('a request with neither :authority nor Host is reset, nothing goes upstream', async () => {
    const raw = await RawH2.open(gw.gateway.plainPort as number);
    try {
      const block = Buffer.concat([
        literal(':method', 'GET'),
        literal(':scheme', 'http'),
        literal(':path', '/public/noauth'),
      ]);
      await raw.write(frame(FrameType.HEADERS, END_STREAM | END_HEADERS, 1, block));
      await expect
        .poll(() => raw.frames.some((f) => f.type === FrameType.RST_STREAM && f.stream === 1))
        .toBe(true);
      expect(upstream.received.some((r) => r.url === '/public/noauth')).toBe(false);
    } finally {
      raw.destroy();
    }
  });
});
