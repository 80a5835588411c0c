/**
 * The proxy port. For every request: request id → target normalised once → route → stages →
 * upstream. Requests the server cannot even parse are answered by `clientError` with problem+json.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { runChain, type ChainEnd } from '../pipeline/chain.js';
import type { RequestContext } from '../pipeline/context.js';
import { problems, problem, type Problem } from '../pipeline/problems.js';
import { requestIdFor } from '../stages/request-id/index.js';
import { forward, type ProxyEnv } from '../upstream/proxy.js';
import { handleUpgrade } from '../upstream/upgrade.js';
import type { RequestObserver } from '../observability/request-observer.js';
import { resolveRequest } from './resolve.js';
import { GatewayResponse } from './response.js';
import { sendProblem, writeRawProblem } from './respond.js';
import type { Runtime } from './runtime.js';

export type DataPlaneState = {
  runtime: Runtime;
  /** metrics, access log and span of every finished request */
  readonly observer: RequestObserver;
  draining: boolean;
  /** client sockets of upgraded (WebSocket) connections: node's server no longer manages them */
  readonly upgraded: Set<Socket>;
};

export function createDataPlane(state: DataPlaneState): Server {
  const limits = state.runtime.config.limits;
  const server = createServer({
    requestTimeout: limits.requestTimeout,
    headersTimeout: limits.headersTimeout,
    keepAliveTimeout: limits.keepAliveTimeout,
    maxHeaderSize: limits.maxHeaderSize,
    // Host is checked by `prepare`, so that its absence gets a problem+json like every error
    requireHostHeader: false,
    // how often node enforces headersTimeout/requestTimeout (default 30 s: far too coarse)
    connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(limits.headersTimeout / 4))),
    joinDuplicateHeaders: false,
    noDelay: true,
    ServerResponse: GatewayResponse,
  });

  const env: ProxyEnv = {
    get bodyLimit() {
      return state.runtime.config.limits.bodySize;
    },
    get sendTimeout() {
      return state.runtime.config.limits.sendTimeout;
    },
    isDraining: () => state.draining,
  };
  const end: ChainEnd = {
    proceed: (ctx) => forward(ctx, env),
    reject: (ctx, p) => sendProblem(ctx.res, p, ctx.requestId, ctx.bodyLength !== 0 || state.draining),
  };

  // one listener for every response ('close' comes once, finished or cut): no closure per request
  const observer = state.observer;
  function onResponseClose(this: GatewayResponse): void {
    observer.record(this);
    this.exchange?.onClientClose(); // stops an upstream exchange the client left
  }

  const onRequest = (req: IncomingMessage, res: GatewayResponse, expectContinue: boolean): void => {
    res.startTime = performance.now();
    res.on('close', onResponseClose);
    const ctx = prepare(state, req, res);
    if (ctx === null) return;
    ctx.expectContinue = expectContinue;
    runChain(ctx, ctx.route.stages, 0, end);
  };

  server.on('request', (req, res) => onRequest(req, res as GatewayResponse, false));
  server.on('checkContinue', (req, res) => onRequest(req, res as GatewayResponse, true));
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const res = new GatewayResponse(req);
    res.startTime = performance.now();
    handleUpgrade(state.runtime, req, socket, head, state.draining, state.upgraded, res, (status) =>
      observer.recordAs(res, status),
    );
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => onClientError(err, socket));
  return server;
}

/** Everything before the stages: returns the context, or null after answering with an error. */
function prepare(state: DataPlaneState, req: IncomingMessage, res: GatewayResponse): RequestContext | null {
  const r = resolveRequest(state.runtime, req, res);
  if (r.ok) return r.ctx;
  sendProblem(res, r.problem, r.requestId, r.bodyLength !== 0 || state.draining);
  return null;
}

const CLIENT_ERRORS: Readonly<Record<string, Problem>> = {
  HPE_HEADER_OVERFLOW: problem(431, 'headers_too_large', 'request headers are too large'),
  HPE_CHUNK_EXTENSIONS_OVERFLOW: problem(413, 'body_too_large', 'chunk extensions are too large'),
  ERR_HTTP_REQUEST_TIMEOUT: problem(408, 'request_timeout', 'the request was not received in time'),
  ERR_HTTP_HEADERS_TIMEOUT: problem(408, 'request_timeout', 'the request headers were not received in time'),
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
function onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
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
  if (pending !== null && pending.req.complete) {
    afterResponses(socket, () => answerAndClose(socket, p));
    return;
  }
  if (pending?.headersSent === true) {
    // the failing request is the one being answered: its response cannot be completed
    socket.destroy();
    return;
  }
  answerAndClose(socket, p);
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

function answerAndClose(socket: Socket, p: Problem): void {
  writeRawProblem(socket, p, requestIdFor(undefined));
  if (socket.destroyed) return;
  // The server socket allows half-open connections: a client that never closes its side (a
  // slowloris client does not) would keep this socket forever. Give it a moment to read the
  // answer (destroying at once could turn unread input into a reset that loses the answer).
  const timer = setTimeout(() => socket.destroy(), ERROR_LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}
