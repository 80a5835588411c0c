/**
 * The proxy port. For every request: request id → target normalised once → route → stages →
 * upstream. Requests the server cannot even parse are answered by `clientError` with problem+json.
 * No handler may throw out of here: node would pass the exception on as uncaught and the process
 * would end. Every listener catches at its boundary: a failure becomes a `500 internal_error`
 * (or a closed connection once the answer has started), counted and logged (`PortEvents`).
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { runChain, type ChainEnd } from '../pipeline/chain.js';
import type { RequestContext } from '../pipeline/context.js';
import { problems, problem, type Problem } from '../pipeline/problems.js';
import { requestIdFor } from '../stages/request-id/index.js';
import { forward, type ProxyEnv } from '../upstream/proxy.js';
import { handleUpgrade } from '../upstream/upgrade.js';
import type { PortEvents } from '../observability/port-events.js';
import type { RequestObserver } from '../observability/request-observer.js';
import { resolveRequest } from './resolve.js';
import { GatewayResponse } from './response.js';
import { sendProblem, writeRawProblem } from './respond.js';
import type { Runtime } from './runtime.js';

export type DataPlaneState = {
  runtime: Runtime;
  /** metrics, access log and span of every finished request */
  readonly observer: RequestObserver;
  /** handler failures and refused requests: counted, logged at a bounded rate */
  readonly events: PortEvents;
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
  const events = state.events;
  const failed = (res: GatewayResponse, err: unknown): void => handlerFailed(events, res, err);
  const end: ChainEnd = {
    proceed: (ctx) => forward(ctx, env),
    reject: (ctx, p) => sendProblem(ctx.res, p, ctx.requestId, ctx.bodyLength !== 0 || state.draining),
    failed: (ctx, err) => failed(ctx.res, err),
  };

  // one listener for every response ('close' comes once, finished or cut): no closure per request
  const observer = state.observer;
  function onResponseClose(this: GatewayResponse): void {
    try {
      observer.record(this);
      this.exchange?.onClientClose(); // stops an upstream exchange the client left
    } catch (err) {
      reportFailure(events, err, this.requestId); // the response is over: nothing left to answer
    }
  }

  // node emits 'error' on a response only for a write after its end (a bug); with no listener,
  // that error would be thrown from the event loop and end the process
  function onResponseError(this: GatewayResponse, err: Error): void {
    reportFailure(events, err, this.requestId);
    this.destroy();
  }

  const onRequest = (req: IncomingMessage, res: GatewayResponse, expectContinue: boolean): void => {
    try {
      res.startTime = performance.now();
      res.on('close', onResponseClose);
      res.on('error', onResponseError);
      const ctx = prepare(state, req, res);
      if (ctx === null) return;
      ctx.expectContinue = expectContinue;
      runChain(ctx, ctx.route.stages, 0, end); // catches what fails from here on (end.failed)
    } catch (err) {
      failed(res, err);
    }
  };

  server.on('request', (req, res) => onRequest(req, res as GatewayResponse, false));
  server.on('checkContinue', (req, res) => onRequest(req, res as GatewayResponse, true));
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const res = new GatewayResponse(req);
    res.startTime = performance.now();
    let recorded = false;
    const answered = (status: number): void => {
      if (recorded) return;
      recorded = true;
      observer.recordAs(res, status);
    };
    try {
      handleUpgrade(state.runtime, req, socket, head, state.draining, state.upgraded, res, answered, (err) =>
        reportFailure(events, err, res.requestId),
      );
    } catch (err) {
      reportFailure(events, err, res.requestId);
      upgradeFailed(socket, res, answered);
    }
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    try {
      onClientError(err, socket, events);
    } catch (failure) {
      socket.destroy();
      reportFailure(events, failure, null);
    }
  });
  return server;
}

/**
 * A handler threw or rejected: `500 internal_error` if nothing was sent yet (with `Connection:
 * close`: the request body may be unread), else the connection is cut; counted and logged.
 */
function handlerFailed(events: PortEvents, res: GatewayResponse, err: unknown): void {
  try {
    if (res.requestId === '') res.requestId = requestIdFor(undefined);
    sendProblem(res, problems.internal(), res.requestId, true);
  } catch {
    res.destroy();
  }
  reportFailure(events, err, res.requestId);
}

/** An upgrade whose handler threw: the socket gets a 500 if nothing was written to it yet. */
function upgradeFailed(socket: Socket, res: GatewayResponse, answered: (status: number) => void): void {
  try {
    if (socket.bytesWritten > 0 || !socket.writable) {
      socket.destroy();
      return;
    }
    if (res.requestId === '') res.requestId = requestIdFor(undefined);
    const p = problems.internal();
    res.problemCode = p.code;
    answered(p.status);
    writeRawProblem(socket, p, res.requestId);
  } catch {
    socket.destroy();
  }
}

function reportFailure(events: PortEvents, err: unknown, requestId: string | null): void {
  try {
    events.handlerFailed('proxy', err, requestId === '' ? null : requestId);
  } catch {
    // logging the failure failed (a thrown value pino cannot serialise): the metric may be all
    // there is, and throwing from here would end the process
  }
}

/** Everything before the stages: returns the context, or null after answering with an error. */
function prepare(state: DataPlaneState, req: IncomingMessage, res: GatewayResponse): RequestContext | null {
  const r = resolveRequest(state.runtime, req, res);
  if (r.ok) return r.ctx;
  sendProblem(res, r.problem, r.requestId, r.bodyLength !== 0 || state.draining);
  return null;
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
