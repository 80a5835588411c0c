import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { problemBody } from '../problems/body.js';
import type { Problem } from '../problems/registry.js';
import { isGrpc, writeGrpcProblem } from '../problems/grpc.js';
import type { Reply } from '../stages/stage.js';
import { writeProblem } from '../problems/write.js';
import type { GatewayResponse } from './response.js';

/**
 * Answers a data-plane request with a problem, recording its code and size for the access log
 * and metrics. `close` ends the connection after it (unread body, draining).
 */
export function sendProblem(res: GatewayResponse, p: Problem, requestId: string, close: boolean): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  res.problemCode = p.code;
  if (isGrpc(res.req.headers['content-type'])) {
    writeGrpcProblem(res, p, requestId, close); // a gRPC client reads grpc-status, not a body
    return;
  }
  const body = problemBody(p, requestId);
  res.bytesOut = Buffer.byteLength(body);
  writeProblem(res, p, requestId, close, body);
}

const EMPTY = Buffer.alloc(0);

/** `p` with `extra` headers after its own (a stage's `answerHeaders`). */
export function withHeaders(p: Problem, extra: readonly string[]): Problem {
  return { ...p, headers: p.headers === undefined ? extra : [...p.headers, ...extra] };
}

/**
 * Answers a data-plane request with a stage's reply (not an error): its headers, then the
 * `extra` a stage asked for on every answer (CORS), with the request id.
 */
export function sendReply(
  res: GatewayResponse,
  reply: Reply,
  extra: readonly string[] | null,
  close: boolean,
): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  // RFC 9110 §8.6: no Content-Length (and no body) on a 204 or a 304
  const bodiless = reply.status === 204 || reply.status === 304;
  const body = bodiless ? EMPTY : reply.body;
  const headers = bodiless ? [...reply.headers] : [...reply.headers, 'content-length', String(body.length)];
  headers.push('x-request-id', res.requestId);
  if (extra !== null) headers.push(...extra);
  if (close) headers.push('connection', 'close');
  res.bytesOut = body.length;
  res.writeHead(reply.status, headers);
  res.end(body);
}

/** The same, written raw to an upgrade's socket. */
export function writeRawReply(
  socket: Socket,
  reply: Reply,
  requestId: string,
  extra: readonly string[] | null,
): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const bodiless = reply.status === 204 || reply.status === 304;
  const lines = (list: readonly string[]) =>
    list.reduce((s, v, i, a) => (i % 2 === 0 ? `${s}${v}: ${a[i + 1]}\r\n` : s), '');
  const head =
    `HTTP/1.1 ${reply.status} ${STATUS_CODES[reply.status] ?? ''}\r\n${lines(reply.headers)}${lines(extra ?? [])}` +
    (bodiless ? '' : `content-length: ${reply.body.length}\r\n`) +
    `x-request-id: ${requestId}\r\nconnection: close\r\n\r\n`;
  socket.write(
    !bodiless && reply.body.length > 0 ? Buffer.concat([Buffer.from(head, 'latin1'), reply.body]) : head,
  );
  endAndLinger(socket);
}

/** The same, written raw to a socket (for errors before or outside node's response object). */
export function writeRawProblem(socket: Socket, p: Problem, requestId: string): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const body = problemBody(p, requestId);
  const extra = p.headers
    ? p.headers.reduce((s, v, i, a) => (i % 2 === 0 ? `${s}${v}: ${a[i + 1]}\r\n` : s), '')
    : '';
  endAndLinger(
    socket,
    `HTTP/1.1 ${p.status} ${p.title}\r\ncontent-type: application/problem+json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
      `x-request-id: ${requestId}\r\n${extra}connection: close\r\n\r\n${body}`,
  );
}

/**
 * Ends a raw socket: what the client still sends is read and discarded (unread bytes would keep
 * the socket open), and a client that never closes its side loses the socket after 1 s.
 */
export function endAndLinger(socket: Socket, last?: string): void {
  if (last === undefined) socket.end();
  else socket.end(last);
  socket.resume();
  const timer = setTimeout(() => socket.destroy(), 1000);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}
