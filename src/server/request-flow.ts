/**
 * The data plane's composition root: every request, plain or upgrade, goes through `handle`,
 * whose steps are the gateway's architecture, in order:
 *
 *   header scan → request id → trace → target → route → client address
 *     → the route's stages (pipeline/chain.ts) → upstream (upstream/proxy.ts, upstream/upgrade.ts)
 *     → observe (observability/request-observer.ts, when the response closes)
 *
 * Nothing below the server answers a client with an error: the stages return a `Problem`, the
 * proxy hands one back (`fail`), and `answer` writes it, on the response or on an upgrade's raw
 * socket, applying the one rule for closing the connection after it. No handler may throw out
 * of here (node would end the process): a failure becomes a `500 internal_error` (or a cut
 * connection once the answer has started), counted and logged (`PortEvents`).
 */
import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { PortEvents } from '../observability/port-events.js';
import type { RequestObserver } from '../observability/request-observer.js';
import { runChain, type ChainEnd } from '../pipeline/chain.js';
import { problems, type Problem } from '../problems/registry.js';
import { normaliseHost } from '../router/host.js';
import { parseRequestTarget } from '../router/request-target.js';
import { RequestContext, type Reply } from '../stages/stage.js';
import { forward } from '../upstream/proxy.js';
import { forwardUpgrade, type UpgradeEnv } from '../upstream/upgrade.js';
import { appendForwarded, clientIpFor, plainAddress } from './client-address.js';
import { scanRequestHeaders, type RequestHeaderScan } from './request-headers.js';
import { requestIdFor } from './request-id.js';
import { answerAsHttp1 } from './protocols/h2c-offer.js';
import {
  endAndLinger,
  sendProblem,
  sendReply,
  withHeaders,
  writeRawProblem,
  writeRawReply,
} from './respond.js';
import { GatewayResponse, type GatewayH2Response } from './response.js';
import type { Runtime } from './runtime.js';

export type DataPlaneState = {
  runtime: Runtime;
  /** metrics, access log and span of every finished request */
  readonly observer: RequestObserver;
  /** handler failures and refused requests: counted, logged at a bounded rate */
  readonly events: PortEvents;
  draining: boolean;
  /** admin `POST /drain`: readiness fails and responses close their connections; no shutdown */
  drainRequested?: boolean;
  /** client sockets of upgraded (WebSocket) connections: node's server no longer manages them */
  readonly upgraded: Set<Socket>;
};

/** The context of a data-plane request: its response is the server's. */
export type FlowContext = RequestContext<GatewayResponse>;

export class RequestFlow implements ChainEnd<FlowContext>, UpgradeEnv {
  /** the one 'close' listener of every response (it comes once, finished or cut) */
  private readonly onResponseClose: (this: GatewayResponse) => void;
  /** node emits 'error' on a response only for a write after its end (a bug); unheard, it would end the process */
  private readonly onResponseError: (this: GatewayResponse, err: Error) => void;

  constructor(private readonly state: DataPlaneState) {
    // made once, called on the response (`this`): no closure per request
    const { observer, events } = state;
    this.onResponseClose = function (this: GatewayResponse): void {
      try {
        observer.record(this);
        this.exchange?.onClientClose(); // stops an upstream exchange the client left
      } catch (err) {
        // the response is over: nothing left to answer
        reportFailure(events, err, this.requestId === '' ? null : this.requestId);
      }
    };
    this.onResponseError = function (this: GatewayResponse, err: Error): void {
      reportFailure(events, err, this.requestId === '' ? null : this.requestId);
      this.destroy();
    };
  }

  /** A plain request (`expectContinue`: it came with `Expect: 100-continue`). */
  request(req: IncomingMessage, res: GatewayResponse, expectContinue: boolean): void {
    try {
      res.startTime = performance.now();
      res.on('close', this.onResponseClose);
      res.on('error', this.onResponseError);
      this.handle(req, res, expectContinue);
    } catch (err) {
      this.crashed(res, err);
    }
  }

  /**
   * An HTTP/2 stream (over TLS, or h2c): the same flow. The compatibility API's request and
   * response have every member the flow, the stages and the proxy use (response.ts says which
   * differences GatewayH2Response smooths over); the rest is decided on `res.http2`.
   */
  requestH2(req: Http2ServerRequest, res: GatewayH2Response, expectContinue: boolean): void {
    this.request(req as unknown as IncomingMessage, res as unknown as GatewayResponse, expectContinue);
  }

  /** A connection upgrade: a response object stands in for the answer, written to `socket`. */
  upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    if (req.headers.upgrade?.trim().toLowerCase() === 'h2c') {
      try {
        this.h2cOffer(req, socket, head);
      } catch (err) {
        socket.destroy();
        this.report(err, '');
      }
      return;
    }
    const res = new GatewayResponse(req);
    res.startTime = performance.now();
    res.upgrade = { socket, head };
    try {
      // node's server no longer manages the socket: a drain that times out closes it
      const upgraded = this.state.upgraded;
      upgraded.add(socket);
      socket.once('close', () => upgraded.delete(socket));
      socket.on('error', () => socket.destroy());
      this.handle(req, res, false);
    } catch (err) {
      this.crashed(res, err);
    }
  }

  /** `Upgrade: h2c`: the offer is ignored, the request answered as HTTP/1.1 (protocols/h2c-offer.ts). */
  private h2cOffer(offer: IncomingMessage, socket: Socket, head: Buffer): void {
    const { req, res, chunked } = answerAsHttp1(offer, socket, head);
    if (!chunked) return this.request(req, res, false);
    res.startTime = performance.now();
    res.on('close', this.onResponseClose);
    // no parser is left to read a chunked body: refused, and the connection closes
    this.answer(res, problems.badRequest('an Upgrade: h2c offer with a chunked body'));
  }

  /** The flow itself; what it does not finish here, the chain and the proxy finish. */
  private handle(req: IncomingMessage, res: GatewayResponse, expectContinue: boolean): void {
    const rt = this.state.runtime;
    // 1. header scan: one pass over the raw headers (what to forward, what the steps below read)
    const peer = plainAddress(req.socket.remoteAddress);
    const peerTrusted = rt.trustedProxies.has(peer);
    const scan = scanRequestHeaders(req.rawHeaders, peerTrusted, rt.config.limits.headersWithUnderscores);
    const h2 = res.http2;
    // an HTTP/2 request body needs no Content-Length: one is coming unless HEADERS ended the stream
    if (h2 && scan.bodyLength === 0 && !(req as unknown as Http2ServerRequest).stream.endAfterHeaders)
      scan.bodyLength = -1;
    res.bodyLength = scan.bodyLength;
    // 2. request id: the client's when it is plain, else a new UUID
    const requestId = (res.requestId = requestIdFor(scan.requestId));
    // 3. trace: the client's trace context continued, or a new one
    const trace = (res.trace = rt.tracing.begin(scan.traceparent, scan.tracestate));
    // 4. target: HTTP/1 framing that holds together, the request target normalised once
    const refused = h2
      ? checkH2(req, scan, rt.config.limits.maxUrlLength)
      : checkFraming(req, scan, rt.config.limits.maxUrlLength);
    if (refused !== null) return this.refuse(res, refused);
    const target = parseRequestTarget(req.url ?? '/');
    if (!target.ok) return this.refuse(res, problems.badRequest(target.reason));
    // 5. route
    const route = rt.router.match(normaliseHost(scan.host), req.method as string, target.path);
    if (route === undefined) return this.refuse(res, problems.noRoute());
    // 6. client address, and the forwarding and trace headers the upstream gets
    const clientIp = peerTrusted ? clientIpFor(peer, scan.forwardedFor, rt.trustedProxies) : peer;
    const headers = scan.forward;
    const stripped = route.stripLength > 0 ? target.path.slice(0, route.stripLength) : '';
    const tls = (req.socket as TLSSocket).encrypted === true;
    appendForwarded(headers, requestId, peer, peerTrusted, clientIp, scan, stripped, tls);
    headers.push('traceparent', trace.traceparent);
    if (trace.tracestate !== null) headers.push('tracestate', trace.tracestate);
    const ctx = (res.ctx = new RequestContext(req, res, route));
    ctx.requestId = requestId;
    ctx.path = target.path;
    ctx.query = target.query;
    ctx.clientIp = clientIp;
    ctx.upstreamHeaders = headers;
    ctx.bodyLength = scan.bodyLength;
    ctx.startTime = res.startTime;
    ctx.expectContinue = expectContinue;
    if (res.upgrade !== null) {
      if (this.state.draining) return this.answer(res, problems.shuttingDown());
      if (req.headers.upgrade === undefined)
        return this.answer(res, problems.badRequest('Connection: upgrade without an Upgrade header'));
    }
    // 7. the route's stages, then 8. upstream (`proceed`); 9. observe: `onResponseClose`, or
    // an upgrade's `answered`
    runChain(ctx, route.stages, 0, this);
  }

  /** The stages let the request through: to the upstream. */
  proceed(ctx: FlowContext): void {
    const upgrade = ctx.res.upgrade;
    if (upgrade === null) forward(ctx, this);
    else forwardUpgrade(ctx, upgrade.socket, upgrade.head, ctx.req.headers.upgrade as string, this);
  }

  /** A stage refused the request. */
  reject(ctx: FlowContext, problem: Problem): void {
    this.answer(ctx.res, problem);
  }

  /** A stage answered the request itself (a preflight, a fixed response, a redirect). */
  respond(ctx: FlowContext, reply: Reply): void {
    const res = ctx.res;
    const upgrade = res.upgrade;
    if (upgrade === null) {
      sendReply(res, reply, ctx.answerHeaders, res.bodyLength !== 0 || this.state.draining);
      return;
    }
    this.observeUpgrade(res, reply.status);
    writeRawReply(upgrade.socket, reply, res.requestId, ctx.answerHeaders);
  }

  /** The proxy gave up on the request (no target, a timeout, an upstream failure...). */
  fail(ctx: FlowContext, problem: Problem): void {
    this.answer(ctx.res, problem);
  }

  /** A stage, or what the chain called, threw or rejected. */
  failed(ctx: FlowContext, err: unknown): void {
    this.crashed(ctx.res, err);
  }

  /** An upgrade's upstream answered: the request is recorded with that status. */
  answered(ctx: FlowContext, status: number): void {
    this.observeUpgrade(ctx.res, status);
  }

  endSocket(socket: Socket): void {
    endAndLinger(socket);
  }

  get sendTimeout(): number {
    return this.state.runtime.config.limits.sendTimeout;
  }

  isDraining(): boolean {
    return this.state.draining || this.state.drainRequested === true;
  }

  /**
   * Every error answer of the data plane. A plain response closes its connection when the
   * request body may be unread (it would be read as the next request) or the gateway is
   * draining; an upgrade's answer goes to its raw socket, which always closes.
   */
  private answer(res: GatewayResponse, p: Problem): void {
    const extra = res.ctx?.answerHeaders ?? null;
    if (extra !== null) p = withHeaders(p, extra);
    const upgrade = res.upgrade;
    if (upgrade === null) {
      // HTTP/2: the connection stays (no Connection header there); an unread body ends with its stream
      sendProblem(res, p, res.requestId, !res.http2 && (res.bodyLength !== 0 || this.state.draining));
      return;
    }
    res.problemCode = p.code;
    this.observeUpgrade(res, p.status);
    writeRawProblem(upgrade.socket, p, res.requestId);
  }

  /** Before the stages: a draining gateway refuses upgrades first, whatever else is wrong. */
  private refuse(res: GatewayResponse, p: Problem): void {
    this.answer(res, res.upgrade !== null && this.state.draining ? problems.shuttingDown() : p);
  }

  /**
   * A handler threw or rejected: `500 internal_error` if nothing was sent yet (with `Connection:
   * close`: the request body may be unread), else the connection is cut; counted and logged.
   */
  private crashed(res: GatewayResponse, err: unknown): void {
    const socket = res.upgrade?.socket ?? null;
    try {
      if (res.requestId === '') res.requestId = requestIdFor(undefined);
      if (socket === null) sendProblem(res, problems.internal(), res.requestId, true);
      else if (socket.bytesWritten > 0 || !socket.writable) socket.destroy();
      else this.answer(res, problems.internal());
    } catch {
      if (socket === null) res.destroy();
      else socket.destroy();
    }
    this.report(err, res.requestId);
  }

  private observeUpgrade(res: GatewayResponse, status: number): void {
    if (res.observed) return;
    res.observed = true;
    this.state.observer.recordAs(res, status);
  }

  private report(err: unknown, requestId: string): void {
    reportFailure(this.state.events, err, requestId === '' ? null : requestId);
  }
}

/** The request line and framing headers, before routing: a problem, or null when they hold. */
function checkFraming(req: IncomingMessage, scan: RequestHeaderScan, maxUrlLength: number): Problem | null {
  // llhttp also parses `HTTP/0.9` and `HTTP/2.0` request lines; neither is HTTP/1 framing (the
  // Host requirement, keep-alive rules) and no upstream should get them: RFC 9110 §15.6.6
  if (req.httpVersionMajor !== 1)
    return problems.httpVersionNotSupported(req.httpVersionMajor, req.httpVersionMinor);
  if (scan.invalid !== undefined) return problems.badRequest(scan.invalid);
  if (scan.host === undefined && req.httpVersionMinor === 1)
    return problems.badRequest('missing Host header');
  if ((req.url ?? '/').length > maxUrlLength) return problems.urlTooLong(maxUrlLength);
  return null;
}

/** An HTTP/2 request, before routing (node's parser checked the pseudo-headers): a problem, or null. */
function checkH2(req: IncomingMessage, scan: RequestHeaderScan, maxUrlLength: number): Problem | null {
  if (scan.invalid !== undefined) return problems.badRequest(scan.invalid);
  if (scan.host === undefined) return problems.badRequest('missing :authority');
  if (req.method === 'CONNECT') return problems.badRequest('CONNECT is not proxied');
  if ((req.url ?? '/').length > maxUrlLength) return problems.urlTooLong(maxUrlLength);
  return null;
}

/** Counts and logs a handler failure; never throws. */
export function reportFailure(events: PortEvents, err: unknown, requestId: string | null): void {
  try {
    events.handlerFailed('proxy', err, requestId);
  } catch {
    // logging the failure failed (a thrown value pino cannot serialise): the metric may be all
    // there is, and throwing from here would end the process
  }
}
