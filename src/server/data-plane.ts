/**
 * The proxy port: node's HTTP server, whose requests and upgrades go through the request flow
 * (request-flow.ts). Requests the server cannot even parse are answered here (`clientError`)
 * with problem+json. No listener may throw out of here: node would pass the exception on as
 * uncaught and the process would end. Every listener catches at its boundary.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { problems, problem, type Problem } from '../problems/registry.js';
import type { PortEvents } from '../observability/port-events.js';
import { reportFailure, RequestFlow, type DataPlaneState } from './request-flow.js';
import { requestIdFor } from './request-id.js';
import { GatewayResponse } from './response.js';
import { writeRawProblem } from './respond.js';

export type { DataPlaneState } from './request-flow.js';

export function createDataPlane(state: DataPlaneState, flow = new RequestFlow(state)): Server {
  const limits = state.runtime.config.limits;
  const server = createServer({
    requestTimeout: limits.requestTimeout,
    headersTimeout: limits.headersTimeout,
    keepAliveTimeout: limits.keepAliveTimeout,
    maxHeaderSize: limits.maxHeaderSize,
    // Host is checked by the request flow, so that its absence gets a problem+json like every error
    requireHostHeader: false,
    // how often node enforces headersTimeout/requestTimeout (default 30 s: far too coarse)
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(limits.headersTimeout / 4))),
    joinDuplicateHeaders: false,
    noDelay: true,
    ServerResponse: GatewayResponse,
  });

  server.on('request', (req, res) => flow.request(req, res as GatewayResponse, false));
  server.on('checkContinue', (req, res) => flow.request(req, res as GatewayResponse, true));
  onUpgradeAndClientError(server, flow, state.events);
  return server;
}

/**
 * What an HTTP/1 connection adds to requests (upgrades, unparseable input), on node's HTTP
 * server or on the HTTP/2 server's HTTP/1.1 fallback (protocols/listeners.ts).
 */
export function onUpgradeAndClientError(
  server: NodeJS.EventEmitter,
  flow: RequestFlow,
  events: PortEvents,
): void {
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) =>
    flow.upgrade(req, socket, head),
  );
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    try {
      onClientError(err, socket, events);
    } catch (failure) {
      socket.destroy();
      reportFailure(events, failure, null);
    }
  });
}

const CLIENT_ERRORS: Readonly<Record<string, Problem>> = {
  HPE_HEADER_OVERFLOW: problem('headers_too_large', 'request headers are too large'),
  HPE_CHUNK_EXTENSIONS_OVERFLOW: problem('body_too_large', 'chunk extensions are too large'),
  ERR_HTTP_REQUEST_TIMEOUT: problem('request_timeout', 'the request was not received in time'),
  ERR_HTTP_HEADERS_TIMEOUT: problem('request_timeout', 'the request headers were not received in time'),
};

/** How long a client may keep its half of the connection open after an error answer. */
const ERROR_LINGER_MS = 1000;

/** Sockets whose error answer is written or waiting for earlier responses. */
const answered = new WeakSet<Socket>();

type PendingResponse = GatewayResponse & { req: IncomingMessage };
const inFlightResponse = (socket: Socket) =>
  (socket as Socket & { _httpMessage?: PendingResponse | null })._httpMessage ?? null;

/**
 * Unparseable requests (smuggling attempts, bad framing, oversized headers, slowloris).
 * The answer is a problem+json and the connection is closed. When the error comes after a
 * complete request still being answered (a pipelined request, or bytes after a request that
 * closes the connection), that answer goes out first, so the client never reads our 400 as
 * the answer to a request the upstream did process.
 */
function onClientError(err: NodeJS.ErrnoException, socket: Socket, events: PortEvents): void {
  if (answered.has(socket)) return; // node reports the same parse error again on more input
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  answered.add(socket);
  const p =
    CLIENT_ERRORS[err.code ?? ''] ??
    problems.badRequest(`malformed HTTP request (${err.code ?? 'parse error'})`);
  const pending = inFlightResponse(socket);
  const answer = () => answerAndClose(socket, p, err.code, events);
  if (pending !== null && pending.req.complete) {
    afterResponses(socket, () => {
      // runs in a response's 'finish' or 'close' listener: nothing above it would catch
      try {
        answer();
      } catch (failure) {
        socket.destroy();
        reportFailure(events, failure, null);
      }
    });
    return;
  }
  if (pending?.headersSent === true) {
    // the failing request is the one being answered: its response cannot be completed (it is
    // counted and logged as that request, with the status it had started)
    socket.destroy();
    return;
  }
  answer();
}

/** Calls `then` once the responses queued on the socket are all written (or the socket closed). */
function afterResponses(socket: Socket, then: () => void): void {
  const res = inFlightResponse(socket);
  if (res === null || socket.destroyed) {
    then();
    return;
  }
  let done = false;
  const next = () => {
    if (done) return;
    done = true;
    // node's own 'finish' listener has run first and assigned the next queued response
    afterResponses(socket, then);
  };
  res.once('finish', next);
  res.once('close', next);
}

/** Answers a refused request: counted and logged (sampled) here, since it never becomes a request. */
function answerAndClose(socket: Socket, p: Problem, code: string | undefined, events: PortEvents): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const requestId = requestIdFor(undefined);
  events.refused(p, code, requestId, socket.remoteAddress);
  writeRawProblem(socket, p, requestId);
  if (socket.destroyed) return;
  // The server socket allows half-open connections: a client that never closes its side (a
  // slowloris client does not) would keep this socket forever. Give it a moment to read the
  // answer (destroying at once could turn unread input into a reset that loses the answer).
  const timer = setTimeout(() => socket.destroy(), ERROR_LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}
