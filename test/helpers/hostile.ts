/**
 * Tools for hostile-input tests: a raw client that sends exactly the bytes it is given (in
 * pieces, slowly, or not at all), a parser for what comes back, a tap on what an upstream
 * received on the wire, and counts of the sockets a server still holds.
 */
import type { IncomingMessage } from 'node:http';
import { connect, type Socket } from 'node:net';
import type { TestGateway } from './gateway.js';
import { startUpstream, type Upstream } from './upstream.js';

export type HttpResponse = {
  status: number;
  headers: Record<string, string>;
  body: string;
};

/** Splits everything a server sent on one connection into responses (Content-Length or chunked). */
export function parseResponses(text: string): HttpResponse[] {
  const out: HttpResponse[] = [];
  let rest = text;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    if (end === -1) break;
    const lines = rest.slice(0, end).split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (!m) throw new Error(`not an HTTP response: ${JSON.stringify(rest.slice(0, 80))}`);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
    }
    rest = rest.slice(end + 4);
    let body = '';
    if (headers['transfer-encoding']?.toLowerCase() === 'chunked') {
      for (;;) {
        const lineEnd = rest.indexOf('\r\n');
        if (lineEnd === -1) break;
        const size = parseInt(rest.slice(0, lineEnd), 16);
        body += rest.slice(lineEnd + 2, lineEnd + 2 + size);
        rest = rest.slice(lineEnd + 2 + size + 2);
        if (size === 0 || Number.isNaN(size)) break;
      }
    } else {
      const length = Number(headers['content-length'] ?? 0);
      body = rest.slice(0, length);
      rest = rest.slice(length);
    }
    out.push({ status: Number(m[1]), headers, body });
  }
  return out;
}

/** A raw TCP client: write bytes as you like, wait for data or for the server to close. */
export class RawClient {
  received = '';
  /** the server ended or reset the connection */
  closed = false;
  private waiters: Array<() => void> = [];

  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.received += d.toString('latin1');
      this.wake();
    });
    socket.on('end', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  /** `allowHalfOpen`: keep our side open after the server ends (as a hostile client may). */
  static open(port: number, options: { allowHalfOpen?: boolean } = {}): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: options.allowHalfOpen ?? false });
      socket.once('connect', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  write(data: string | Buffer): void {
    if (!this.socket.destroyed && this.socket.writable) {
      this.socket.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
    }
  }

  /**
   * Writes `data` one piece at a time, `everyMs` apart, until done or the server closes.
   * Resolves with the number of pieces written.
   */
  async trickle(data: string, pieceSize: number, everyMs: number): Promise<number> {
    let n = 0;
    for (let i = 0; i < data.length && !this.closed; i += pieceSize) {
      this.write(data.slice(i, i + pieceSize));
      n++;
      await Promise.race([delay(everyMs), this.until(() => this.closed)]);
    }
    return n;
  }

  /** Resolves once `test` holds on what was received, or the connection closed (check `closed`). */
  until(test: (received: string) => boolean): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (test(this.received) || this.closed) resolve();
        else this.waiters.push(check);
      };
      check();
    });
  }

  /** Waits for `count` complete responses (or the close) and returns the parsed ones. */
  async responses(count = 1): Promise<HttpResponse[]> {
    await this.until((r) => completeResponses(r) >= count);
    return parseResponses(this.received);
  }

  waitClosed(): Promise<void> {
    return this.until(() => false);
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

function completeResponses(text: string): number {
  try {
    const parsed = parseResponses(text);
    // the last one may be cut short: count it only when its body is all there
    const last = parsed[parsed.length - 1];
    if (last === undefined) return 0;
    const length = last.headers['content-length'];
    if (length !== undefined && Buffer.byteLength(last.body, 'latin1') < Number(length)) {
      return parsed.length - 1;
    }
    if (last.headers['transfer-encoding'] === 'chunked' && !text.endsWith('0\r\n\r\n')) {
      return parsed.length - 1;
    }
    return parsed.length;
  } catch {
    return 0;
  }
}

/** Sends one payload on a fresh connection, waits for the server to close, returns what came back. */
export async function exchange(
  port: number,
  payload: string | Buffer,
): Promise<{ responses: HttpResponse[]; raw: string; closed: boolean }> {
  const client = await RawClient.open(port);
  client.write(payload);
  await client.waitClosed();
  client.destroy();
  return { responses: parseResponses(client.received), raw: client.received, closed: client.closed };
}

export const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Resolves once the gateway holds no client connection; rejects (naming the count) if some are
 * still open after `timeoutMs`: a leaked socket fails the test instead of hanging it.
 */
export async function noConnectionsLeft(gw: TestGateway, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await gw.gateway.connectionCount();
    if (open === 0) return;
    if (Date.now() > deadline) throw new Error(`${open} connection(s) still open on the gateway`);
    await delay(10);
  }
}

/**
 * Records, per connection, the raw bytes an upstream received: what the upstream's parser saw,
 * so a test can check the framing the gateway chose.
 */
export function tapUpstream(upstream: Upstream): { wire(): string; connections: number } {
  const chunks: Buffer[] = [];
  const tap = { connections: 0, wire: () => Buffer.concat(chunks).toString('latin1') };
  upstream.server.on('connection', (socket: Socket) => {
    tap.connections++;
    socket.on('data', (d: Buffer) => chunks.push(d));
  });
  return tap;
}

/**
 * Checks what an upstream request looked like on the wire has one meaning: no duplicate or
 * both framing headers, nothing but `chunked` as a transfer coding, one Host.
 */
export function framingProblems(rawHeaders: readonly string[]): string[] {
  const problems: string[] = [];
  const count = (name: string) => rawHeaders.filter((v, i) => i % 2 === 0 && v.toLowerCase() === name);
  const values = (name: string) =>
    rawHeaders.filter((_v, i) => i % 2 === 1 && rawHeaders[i - 1]?.toLowerCase() === name);
  const cl = count('content-length').length;
  const te = values('transfer-encoding');
  if (cl > 1) problems.push('several Content-Length headers');
  if (te.length > 1) problems.push('several Transfer-Encoding headers');
  if (cl > 0 && te.length > 0) problems.push('both Content-Length and Transfer-Encoding');
  if (te.length === 1 && te[0] !== 'chunked') problems.push(`Transfer-Encoding: ${te[0]}`);
  for (const v of values('content-length')) if (!/^\d+$/.test(v)) problems.push(`Content-Length: ${v}`);
  if (count('host').length !== 1) problems.push('not exactly one Host');
  return problems;
}

/** Resolves when an upstream request ends one way or another (complete, aborted, closed). */
export function settled(req: IncomingMessage): Promise<'complete' | 'aborted'> {
  return new Promise((resolve) => {
    if (req.complete) return resolve('complete');
    req.once('end', () => resolve('complete'));
    req.once('close', () => resolve(req.complete ? 'complete' : 'aborted'));
    req.once('error', () => resolve('aborted'));
    req.resume();
  });
}

export type Recorded = {
  method: string;
  url: string;
  rawHeaders: string[];
  body: string;
  rawTrailers: string[];
  /** false when the upload was cut before its end */
  complete: boolean;
};

/**
 * An upstream (see upstream.ts) that reads every request body whole and records it, then
 * answers 200 with `{url, body}`. `requests` holds what it received, in order of arrival.
 */
export async function startRecordingUpstream(): Promise<{ upstream: Upstream; requests: Recorded[] }> {
  const requests: Recorded[] = [];
  const upstream = await startUpstream((req, res) => {
    const entry: Recorded = {
      method: req.method ?? '',
      url: req.url ?? '',
      rawHeaders: req.rawHeaders,
      body: '',
      rawTrailers: [],
      complete: false,
    };
    requests.push(entry);
    req.setEncoding('latin1');
    req.on('data', (d: string) => (entry.body += d));
    req.on('error', () => undefined);
    req.on('end', () => {
      entry.complete = true;
      entry.rawTrailers = req.rawTrailers;
      const body = JSON.stringify({ url: entry.url, body: entry.body });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  return { upstream, requests };
}
