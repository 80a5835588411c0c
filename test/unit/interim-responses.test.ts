/** The filter that removes unsolicited 100 Continue heads before undici's parser reads them. */
import { once } from 'node:events';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  armInterimFilter,
  InterimFilter,
  interimStatus,
  MAX_INTERIM_HEAD,
} from '../../src/upstream/interim-responses.js';

const b = (s: string) => Buffer.from(s, 'latin1');
const FINAL = 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal';
const CONTINUE = 'HTTP/1.1 100 Continue\r\n\r\n';

/** Feeds `pieces` to an armed filter and returns everything it let through. */
function run(pieces: readonly string[], filter = armed()): string {
  let out = '';
  for (const piece of pieces) {
    const passed = filter.filter(b(piece));
    if (passed !== null) out += passed.toString('latin1');
  }
  return out;
}

function armed(): InterimFilter {
  const f = new InterimFilter();
  f.arm();
  return f;
}

describe('interimStatus', () => {
  it('reads the status of a 1xx head', () => {
    expect(interimStatus(b('HTTP/1.1 100 Continue\r\n'))).toBe(100);
    expect(interimStatus(b('HTTP/1.0 103 Early Hints\r\n'))).toBe(103);
    expect(interimStatus(b('HTTP/1.1 101\r\n'))).toBe(101);
  });

  it('is negative for a final status, anything that is not a status line, and too few bytes', () => {
    expect(interimStatus(b('HTTP/1.1 200 OK\r\n'))).toBeLessThan(0);
    expect(interimStatus(b('HTTP/2.0 100 x'))).toBeLessThan(0);
    expect(interimStatus(b('SSH-2.0-OpenSSH'))).toBeLessThan(0);
    expect(interimStatus(b('HTTP/1.1 1'))).toBeLessThan(0);
    // "too few bytes" and "not a 1xx" differ: a prefix is held, a mismatch is not
    expect(interimStatus(b('HTTP/1.1 1'))).not.toBe(interimStatus(b('HTTP/1.1 2')));
  });
});

describe('InterimFilter', () => {
  it('passes everything through untouched while disarmed, without copying', () => {
    const f = new InterimFilter();
    const chunk = b(CONTINUE + FINAL);
    expect(f.filter(chunk)).toBe(chunk);
  });

  it('drops a 100 head at the start of a response, and disarms at the final head', () => {
    const f = armed();
    expect(run([CONTINUE + FINAL], f)).toBe(FINAL);
    expect(f.armed).toBe(false);
    // the body and later bytes are never looked at
    const body = b(CONTINUE);
    expect(f.filter(body)).toBe(body);
  });

  it('gives a final response without a 100 unchanged', () => {
    const f = armed();
    const chunk = b(FINAL);
    expect(f.filter(chunk)).toBe(chunk);
    expect(f.armed).toBe(false);
  });

  it('whatever the pieces the bytes arrive in, only the 100 heads go', () => {
    const stream = CONTINUE + 'HTTP/1.1 100 Continue\r\nX-Note: a\r\n\r\n' + FINAL;
    for (let i = 1; i < stream.length; i++) {
      for (const j of [i + 1, i + 7, stream.length]) {
        const pieces = [stream.slice(0, i), stream.slice(i, j), stream.slice(j)].filter((p) => p !== '');
        expect(run(pieces), `split at ${i}, ${j}`).toBe(FINAL);
      }
    }
  });

  it('lets other 1xx heads through (undici relays 103 and skips 102) and keeps looking after them', () => {
    const hints = 'HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n';
    const processing = 'HTTP/1.1 102 Processing\r\n\r\n';
    expect(run([hints + CONTINUE + processing + FINAL])).toBe(hints + processing + FINAL);
    expect(run([hints, CONTINUE.slice(0, 5), CONTINUE.slice(5) + FINAL])).toBe(hints + FINAL);
  });

  it('stops at a 101: what follows an upgrade is another protocol', () => {
    const upgrade = 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n';
    const f = armed();
    expect(run([upgrade + CONTINUE], f)).toBe(upgrade + CONTINUE);
    expect(f.armed).toBe(false);
  });

  it('gives up on a 1xx head without an end after MAX_INTERIM_HEAD bytes: the parser judges it', () => {
    const f = armed();
    const huge = 'HTTP/1.1 100 Continue\r\nX-Pad: ' + 'a'.repeat(MAX_INTERIM_HEAD);
    expect(f.filter(b(huge.slice(0, 100)))).toBeNull();
    expect(run([huge.slice(100)], f)).toBe(huge);
    expect(f.armed).toBe(false);
  });

  it('re-arming forgets a half-received head of the previous response', () => {
    const f = armed();
    expect(f.filter(b('HTTP/1.1 100 Cont'))).toBeNull();
    f.arm();
    expect(run([FINAL], f)).toBe(FINAL);
  });
});

describe('armInterimFilter on a socket', () => {
  it("filters what read() returns, once armed, and only at a response's start", async () => {
    const server = createServer((s) => {
      s.once('data', () => s.write(CONTINUE + FINAL));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const socket: Socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
    await once(socket, 'connect');
    try {
      let received = '';
      const complete = new Promise<void>((resolve) =>
        socket.on('readable', () => {
          let chunk: Buffer | null;
          while ((chunk = socket.read() as Buffer | null) !== null) received += chunk.toString('latin1');
          if (received.length >= FINAL.length) resolve();
        }),
      );
      armInterimFilter(socket);
      socket.write('GET / HTTP/1.1\r\n\r\n');
      await complete;
      expect(received).toBe(FINAL);

      // the second request on the connection is filtered too; read() is wrapped only once
      const read = socket.read;
      armInterimFilter(socket);
      expect(socket.read).toBe(read);
    } finally {
      socket.destroy();
      server.close();
    }
  });
});
