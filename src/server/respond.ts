import type { Socket } from 'node:net';
import { problemBody } from '../problems/body.js';
import type { Problem } from '../problems/registry.js';
import { isGrpc, writeGrpcProblem } from '../problems/grpc.js';
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
