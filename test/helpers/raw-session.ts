/**
 * A raw TCP client session for step-by-step HTTP exchanges (100-continue, keep-alive framing
 * after HEAD/204/304, WebSocket upgrades): write bytes, wait until something arrives, repeat.
 */
import { connect, type Socket } from 'node:net';

export class RawSession {
  readonly socket: Socket;
  /** everything received so far (latin1) */
  received = '';
  closed = false;
  private waiters: Array<() => void> = [];

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => {
      this.received += d.toString('latin1');
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static open(port: number): Promise<RawSession> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => resolve(new RawSession(socket)));
      socket.once('error', reject);
    });
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Resolves with `received` once `test` holds on it; rejects if the connection closes first. */
  waitFor(test: string | RegExp | ((received: string) => boolean)): Promise<string> {
    const ok =
      typeof test === 'string'
        ? (s: string) => s.includes(test)
        : test instanceof RegExp
          ? (s: string) => test.test(s)
          : test;
    return new Promise((resolve, reject) => {
      const check = () => {
        if (ok(this.received)) resolve(this.received);
        else if (this.closed) reject(new Error(`connection closed; received: ${this.received}`));
        else this.waiters.push(check);
      };
      check();
    });
  }

  /** Resolves once the peer has closed the connection. */
  waitClosed(): Promise<string> {
    return this.waitFor(() => this.closed).catch(() => this.received);
  }

  /** Takes what was received so far (and clears it). */
  take(): string {
    const r = this.received;
    this.received = '';
    return r;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }
}

/** Parses one complete HTTP/1.1 response from the start of `text` (Content-Length or chunked). */
export type ParsedResponse = {
  status: number;
  headers: Record<string, string>;
  /** header names in order, lower case, with repeats */
  names: string[];
  body: string;
  /** the rest of `text` after this response */
  rest: string;
};

export function parseResponse(text: string, opts: { noBody?: boolean } = {}): ParsedResponse | null {
  const end = text.indexOf('\r\n\r\n');
  if (end === -1) return null;
  const lines = text.slice(0, end).split('\r\n');
  const m = /^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? '');
  if (!m) throw new Error(`not an HTTP response: ${text.slice(0, 80)}`);
  const status = Number(m[1]);
  const headers: Record<string, string> = {};
  const names: string[] = [];
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    const name = line.slice(0, i).trim().toLowerCase();
    const value = line.slice(i + 1).trim();
    names.push(name);
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  let rest = text.slice(end + 4);
  if (opts.noBody || status === 204 || status === 304 || (status >= 100 && status < 200)) {
    return { status, headers, names, body: '', rest };
  }
  if (headers['transfer-encoding']?.toLowerCase() === 'chunked') {
    let body = '';
    for (;;) {
      const lineEnd = rest.indexOf('\r\n');
      if (lineEnd === -1) return null;
      const size = parseInt(rest.slice(0, lineEnd), 16);
      if (rest.length < lineEnd + 2 + size + 2) return null;
      body += rest.slice(lineEnd + 2, lineEnd + 2 + size);
      rest = rest.slice(lineEnd + 2 + size + 2);
      if (size === 0) return { status, headers, names, body, rest };
    }
  }
  const length = Number(headers['content-length'] ?? 0);
  if (rest.length < length) return null;
  return { status, headers, names, body: rest.slice(0, length), rest: rest.slice(length) };
}
