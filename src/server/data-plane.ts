/**
 * The proxy port. For every request: request id → target normalised once → route → stages →
 * upstream. Requests the server cannot even parse are answered by `clientError` with problem+json.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { runChain, type ChainEnd } from '../pipeline/chain.js';
import { RequestContext } from '../pipeline/context.js';
import { problems, problem, type Problem } from '../pipeline/problems.js';
import { normaliseHost } from '../router/host.js';
import { parseRequestTarget } from '../router/request-target.js';
import { clientIpFor, forwardedForUpstream, plainAddress } from '../stages/real-ip/index.js';
import { requestIdFor } from '../stages/request-id/index.js';
import { forward, type ProxyEnv } from '../upstream/proxy.js';
import { scanRequestHeaders } from '../upstream/request-headers.js';
import { handleUpgrade } from '../upstream/upgrade.js';
import { sendProblem, writeRawProblem } from './respond.js';
import type { Runtime } from './runtime.js';

export type DataPlaneState = {
  runtime: Runtime;
  draining: boolean;
};

export function createDataPlane(state: DataPlaneState): Server {
  const limits = state.runtime.config.limits;
  const server = createServer({
    requestTimeout: limits.requestTimeout,
    headersTimeout: limits.headersTimeout,
    keepAliveTimeout: limits.keepAliveTimeout,
    maxHeaderSize: limits.maxHeaderSize,
    requireHostHeader: true,
    joinDuplicateHeaders: false,
    noDelay: true,
  });

  const env: ProxyEnv = {
    get bodyLimit() {
      return state.runtime.config.limits.bodySize;
    },
    isDraining: () => state.draining,
  };
  const end: ChainEnd = {
    proceed: (ctx) => forward(ctx, env),
    reject: (ctx, p) => sendProblem(ctx.res, p, ctx.requestId, ctx.bodyLength !== 0 || state.draining),
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse, expectContinue: boolean): void => {
    const ctx = prepare(state, req, res);
    if (ctx === null) return;
    ctx.expectContinue = expectContinue;
    runChain(ctx, ctx.route.stages, 0, end);
  };

  server.on('request', (req, res) => onRequest(req, res, false));
  server.on('checkContinue', (req, res) => onRequest(req, res, true));
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const rt = state.runtime;
    handleUpgrade(rt, req, socket, head, state.draining);
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => onClientError(err, socket));
  return server;
}

/** Everything before the stages: returns the context, or null after answering with an error. */
function prepare(state: DataPlaneState, req: IncomingMessage, res: ServerResponse): RequestContext | null {
  const rt = state.runtime;
  const scan = scanRequestHeaders(req.rawHeaders);
  const requestId = requestIdFor(scan.requestId);
  const url = req.url ?? '/';
  const fail = (p: Problem) => {
    sendProblem(res, p, requestId, scan.bodyLength !== 0 || state.draining);
    return null;
  };
  if (scan.invalid !== undefined) return fail(problems.badRequest(scan.invalid));
  if (url.length > rt.config.limits.maxUrlLength)
    return fail(problems.urlTooLong(rt.config.limits.maxUrlLength));
  const target = parseRequestTarget(url);
  if (!target.ok) return fail(problems.badRequest(target.reason));

  const host = normaliseHost(scan.host);
  const route = rt.router.match(host, req.method as string, target.path);
  if (route === undefined) return fail(problems.noRoute());

  const peer = plainAddress(req.socket.remoteAddress);
  const trusted = rt.trustedProxies;
  const clientIp = clientIpFor(peer, scan.forwardedFor, trusted);
  const peerTrusted = trusted.has(peer);
  const headers = scan.forward;
  headers.push(
    'x-request-id',
    requestId,
    'x-forwarded-for',
    forwardedForUpstream(peer, scan.forwardedFor, trusted),
    'x-forwarded-proto',
    peerTrusted && scan.forwardedProto !== undefined ? scan.forwardedProto : 'http',
    'x-forwarded-host',
    peerTrusted && scan.forwardedHost !== undefined ? scan.forwardedHost : (scan.host ?? ''),
  );
  return new RequestContext(
    req,
    res,
    requestId,
    route,
    target.path,
    target.query,
    clientIp,
    headers,
    scan.bodyLength,
    performance.now(),
  );
}

const CLIENT_ERRORS: Readonly<Record<string, Problem>> = {
  HPE_HEADER_OVERFLOW: problem(431, 'headers_too_large', 'request headers are too large'),
  HPE_CHUNK_EXTENSIONS_OVERFLOW: problem(413, 'body_too_large', 'chunk extensions are too large'),
  ERR_HTTP_REQUEST_TIMEOUT: problem(408, 'request_timeout', 'the request was not received in time'),
  ERR_HTTP_HEADERS_TIMEOUT: problem(408, 'request_timeout', 'the request headers were not received in time'),
};

/** How long a client may keep its half of the connection open after an error answer. */
const ERROR_LINGER_MS = 1000;

/** Unparseable requests (smuggling attempts, bad framing, oversized headers, slowloris). */
function onClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  const inFlight = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (err.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent === true) {
    socket.destroy();
    return;
  }
  const p =
    CLIENT_ERRORS[err.code ?? ''] ??
    problems.badRequest(`malformed HTTP request (${err.code ?? 'parse error'})`);
  writeRawProblem(socket, p, requestIdFor(undefined));
  // The server socket allows half-open connections: a client that never closes its side (a
  // slowloris client does not) would keep this socket forever. Give it a moment to read the
  // answer (destroying at once could turn unread input into a reset that loses the answer).
  const timer = setTimeout(() => socket.destroy(), ERROR_LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}
