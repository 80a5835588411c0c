/**
 * The last step of the pipeline: the request goes to a target of the route's service through
 * its undici pool, and the response streams back. undici's low-level `dispatch` is used with a
 * handler object (no stream wrappers, no promise per chunk): the upstream body is written to the
 * client as it arrives, and the upstream socket is paused whenever the client cannot keep up.
 * The handler speaks undici's raw callback interface (onConnect, onHeaders, onData, onComplete,
 * onError) and is its own controller: with the controller interface alone, undici would wrap
 * every request's handler in an adapter and a controller object, and parse every response's
 * head into a header object nothing here reads (the raw head is what is forwarded).
 *
 * Resilience sits around each attempt: the service's circuit breaker admits it (or the request
 * fails fast with 503 circuit_open), the balancer picks an available target, and the outcome is
 * reported back (breaker, passive health, metrics: attempts.ts). A failed attempt is retried on
 * another target when the retry policy's `decide` allows it (retry-policy.ts): only before
 * anything was sent to the client, only for requests the upstream may see twice, within the
 * budget and the deadline. One Exchange object serves all attempts: an attempt starts only after
 * the previous one's final callback (onComplete or onError), so callbacks never
 * interleave.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { isGrpc } from '../problems/grpc.js';
import { problems, type Problem } from '../problems/registry.js';
import { Attempts } from './attempts.js';
import { REJECTED } from './circuit-breaker.js';
import { classify, failureReason, problemFor, type UpstreamFailure } from './errors.js';
import { dropUnsolicitedContinue } from './interim-responses.js';
import { limitedBody } from './request-body.js';
import { responseHeaders } from './response-headers.js';
import {
  isIdempotent,
  retryAfterOf,
  retryReasonOf,
  type RetryPolicy,
  type RetryReason,
} from './retry-policy.js';
import { SendWatch } from './send-watch.js';
import type { Service } from './service.js';
import type { Target } from './target.js';
import { addTrailers, endHeadOnly, isHttp2, trailersOf } from './trailers.js';

// undici refuses an upstream's unsolicited 100 Continue; the filter drops it first (once per process)
dropUnsolicitedContinue();

export type ProxyEnv = {
  /** `limits.sendTimeout`: ms a client may go without taking a byte of its response (0 = no limit) */
  readonly sendTimeout: number;
  /** true while draining: responses then close their connections */
  isDraining(): boolean;
  /**
   * The request ends with `problem` instead of an upstream answer: the proxy never writes an
   * error answer itself, the server does (and decides whether the connection closes after it).
   * Called with the request `forward` was given.
   */
  fail(request: ProxyRequest, problem: Problem): void;
};

/** What the proxy uses of the client's response (the server's response object is one). */
export interface ProxyResponse extends ServerResponse {
  /** response body bytes written (for the access log) */
  bytesOut: number;
  /** the upstream exchange in progress: the server tells it when the response closes */
  exchange: { onClientClose(): void } | null;
}

/**
 * A request as the proxy sees it, once the stages let it through (the pipeline's request
 * context is one): what to send, and where the proxy records the attempts it made.
 */
export interface ProxyRequest {
  readonly req: IncomingMessage;
  readonly res: ProxyResponse;
  readonly requestId: string;
  readonly route: {
    readonly stripLength: number;
    /** the request body's limit (the route's, else the gateway's) */
    readonly bodyLimit: number;
    /** the route's response timeout in ms; 0 = the service's */
    readonly responseTimeout: number;
    /** the route's retry policy per service; null = the service's own */
    readonly retryPolicies: ReadonlyMap<Service, RetryPolicy> | null;
  };
  /**
   * the service the request goes to (the route's, or the one a stage picked); null only on a
   * route that answers in its stages and never reaches the proxy
   */
  readonly service: Service | null;
  /** normalised path and query, as routed */
  readonly path: string;
  readonly query: string;
  /** the path and query a stage rewrote them to (transform); null = `path` less `stripPrefix`, and `query` */
  readonly upstreamTarget: string | null;
  /** request headers to send upstream: a flat [name, value, ...] list, already cleaned */
  readonly upstreamHeaders: string[];
  /** declared body length; -1 = chunked; 0 = no body */
  readonly bodyLength: number;
  readonly startTime: number;
  /** the client sent `Expect: 100-continue`: the 100 goes out only once the request is proxied */
  readonly expectContinue: boolean;
  bytesIn: number;
  attempts: number;
  upstream: string | null;
  upstreamDurationMs: number;
  /** why the last attempt failed without an answer (access log: `upstreamError`) */
  upstreamError: string | null;
  /** lets the stages add, remove or rewrite the upstream response's headers before they go out */
  responseHeaders(headers: string[], status: number): void;
}

/** The route's service (a route without one answers in its stages: reaching here is a bug, a 500). */
export function serviceOf(ctx: ProxyRequest): Service {
  const service = ctx.service;
  if (service === null) throw new Error(`a request of a route without a service reached the proxy`);
  return service;
}

/** The path the upstream gets: the normalised path less `stripPrefix`, and the query. */
export function upstreamPath(ctx: ProxyRequest): string {
  if (ctx.upstreamTarget !== null) return ctx.upstreamTarget;
  const strip = ctx.route.stripLength;
  let path = ctx.path;
  if (strip > 0) {
    path = path.length > strip ? path.slice(strip) : '/';
    if (path.charCodeAt(0) !== 0x2f) path = '/' + path;
  }
  return ctx.query === '' ? path : path + '?' + ctx.query;
}

/**
 * The service's circuit breaker admits a new request (its generation), or refuses it with
 * `503 circuit_open` (REJECTED). Plain requests and upgrades start the same way.
 */
export function admit(ctx: ProxyRequest, env: ProxyEnv): number {
  const service = serviceOf(ctx);
  const breaker = service.breaker;
  const generation = breaker.admit();
  if (generation === REJECTED) env.fail(ctx, problems.circuitOpen(service.name, breaker.retryAfterMs()));
  return generation;
}

/**
 * A target for an attempt admitted as `generation` (avoiding `tried`), or null after the
 * request was failed with `503 no_healthy_target` (the admission is given back).
 */
export function pickTarget(
  ctx: ProxyRequest,
  env: ProxyEnv,
  generation: number,
  tried: readonly Target[] | null,
): Target | null {
  const service = serviceOf(ctx);
  const target = service.pick(tried);
  if (target === null) {
    service.breaker.record(generation, 'cancelled');
    env.fail(ctx, problems.noHealthyTarget(service.name));
  }
  return target;
}

export function forward(ctx: ProxyRequest, env: ProxyEnv): void {
  // the client left while a stage waited (a slow key lookup): nothing is sent for nobody
  if (ctx.res.destroyed) return;
  const service = serviceOf(ctx);
  const generation = admit(ctx, env);
  if (generation === REJECTED) return;
  if (ctx.expectContinue) ctx.res.writeContinue();
  const overrides = ctx.route.retryPolicies;
  const retry = overrides === null ? service.retry : (overrides.get(service) ?? service.retry);
  // the budget's base: every request of a service that retries, whatever its route's own rules
  if (retry.attempts > 1 || service.retry.attempts > 1) retry.countRequest();
  // gRPC servers may insist on it (HTTP/2 allows `te` with this value only); dropped as hop-by-hop
  if (service.config.protocol !== 'http1' && isGrpc(ctx.req.headers['content-type']))
    ctx.upstreamHeaders.push('te', 'trailers');
  const exchange = new Exchange(ctx, env, service, retry, upstreamPath(ctx));
  ctx.res.exchange = exchange; // the data plane's one 'close' listener calls onClientClose
  exchange.attempt(generation);
}

/**
 * One request's way to the upstream and its response's way back. The fields are the streaming
 * state of the attempt running now; the attempts' bookkeeping (targets, breaker admissions,
 * retry decisions) is `attempts`, the client's send timeout is `sendWatch`.
 */
class Exchange implements Dispatcher.DispatchHandler, Dispatcher.DispatchController {
  /** this attempt's controller (the exchange itself, once on a connection); null until then */
  private controller: Dispatcher.DispatchController | null = null;
  /** undici's abort and resume of the attempt running now (raw callback interface) */
  private abortAttempt: ((err?: Error) => void) | null = null;
  private resumeAttempt: (() => void) | null = null;
  private pausedNow = false;
  private abortReason: Error | null = null;
  /** the trailers of the response that ended (onComplete) */
  rawTrailers: string[] | Buffer[] | null = null;
  /** the response is finished (or the exchange given up): late callbacks do nothing */
  private done = false;
  private readonly method: Dispatcher.HttpMethod;
  private readonly attempts: Attempts;
  /** the upstream response timeout: the route's, else the service's */
  private readonly responseTimeout: number;
  /** what this attempt sends: the request itself, a counting wrapper around it, or nothing */
  private body: Readable | null = null;
  /** an upstream answer to be retried is being read and thrown away */
  private discarding = false;
  /** the wait before the retry decided while `discarding` */
  private nextDelay = 0;
  private status = 0;
  /** the response headers, until the first body byte (or the end) sends them with the status */
  private head: string[] | null = null;
  /** the upstream's Content-Length, counted down as the body arrives; -1 = unknown (chunked) */
  contentLength = -1;
  /** controller.resume and the end of a send wait, for 'drain' (made on the first back-pressure) */
  private onDrain: (() => void) | null = null;
  private sendWatch: SendWatch | null = null;
  /** the wait in the pool's queue (see startQueueTimer) */
  private queueTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly ctx: ProxyRequest,
    private readonly env: ProxyEnv,
    private readonly service: Service,
    private readonly retry: RetryPolicy,
    private readonly path: string,
  ) {
    const method = ctx.req.method as Dispatcher.HttpMethod;
    this.method = method;
    const retryable = retry.attempts > 1 && isIdempotent(method, ctx.req);
    this.attempts = new Attempts(service, retry, retryable, ctx.startTime + retry.config.deadline);
    const own = ctx.route.responseTimeout;
    this.responseTimeout = own > 0 ? own : service.config.timeouts.response;
  }

  /** Starts one attempt, admitted by the breaker as `generation`. */
  attempt(generation: number): void {
    const ctx = this.ctx;
    const target = this.attempts.begin(generation);
    if (target === null) {
      // the admission was given back; no attempt runs (a retry avoided every target)
      this.done = true;
      this.env.fail(ctx, problems.noHealthyTarget(this.service.name));
      return;
    }
    if (target.inflight > target.connections) this.startQueueTimer();
    ctx.attempts++;
    ctx.upstream = target.address;
    if (ctx.upstreamError !== null) ctx.upstreamError = null; // it tells of the last attempt
    this.controller = null;
    this.discarding = false;
    this.contentLength = -1;
    this.head = null;

    const req = ctx.req;
    if (ctx.bodyLength > 0) this.body = req;
    else if (ctx.bodyLength < 0)
      this.body = Readable.from(limitedBody(req, ctx.route.bodyLimit, ctx), { objectMode: false });
    const remaining = this.attempts.remaining();
    const response = this.responseTimeout;
    // a route's own response timeout replaces the pool's (the service's) for this request
    const own = ctx.route.responseTimeout > 0;
    target.pool.dispatch(
      {
        path: this.path,
        method: this.method,
        headers: ctx.upstreamHeaders,
        body: this.body,
        // the overall deadline shortens the wait for this attempt's response headers
        headersTimeout: remaining < response ? Math.max(1, remaining) : own ? response : null,
        bodyTimeout: own ? response : null,
      },
      this,
    );
  }

  // undici's raw callback interface, mapped onto the controller-style steps below

  onConnect(abort: (err?: Error) => void): void {
    this.abortAttempt = abort;
    this.resumeAttempt = null;
    this.pausedNow = false;
    this.abortReason = null;
    this.rawTrailers = null;
    this.requestStarted(this);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    this.resumeAttempt = resume;
    this.responseStarted(this, statusCode, rawHeaders);
    return !this.pausedNow;
  }

  onData(chunk: Buffer): boolean {
    this.responseData(this, chunk);
    return !this.pausedNow;
  }

  onComplete(trailers: string[] | null): void {
    this.rawTrailers = trailers;
    this.responseEnd(this);
  }

  onError(err: Error): void {
    this.responseError(this, err);
  }

  get aborted(): boolean {
    return this.abortReason !== null;
  }

  get paused(): boolean {
    return this.pausedNow;
  }

  get reason(): Error | null {
    return this.abortReason;
  }

  pause(): void {
    this.pausedNow = true;
  }

  resume(): void {
    if (!this.pausedNow) return;
    this.pausedNow = false;
    this.resumeAttempt?.();
  }

  abort(reason: Error): void {
    if (this.abortReason !== null || this.abortAttempt === null) return;
    this.abortReason = reason;
    this.abortAttempt(reason);
  }

  private requestStarted(controller: Dispatcher.DispatchController): void {
    if (this.queueTimer !== null) {
      clearTimeout(this.queueTimer);
      this.queueTimer = null;
    }
    this.controller = controller;
    // answered already (the wait for a connection timed out): the request must not go now
    if (this.done) controller.abort(new ClientGoneError());
  }

  /**
   * Every connection to the target is busy, so the request waits in the pool's queue, where
   * undici's timeouts do not run yet: bound the wait by the response timeout (or the deadline),
   * or a hung upstream would hold queued requests forever.
   */
  private startQueueTimer(): void {
    const wait = Math.max(1, Math.min(this.responseTimeout, this.attempts.remaining()));
    this.queueTimer = setTimeout(this.onQueueTimeout, wait);
  }

  private readonly onQueueTimeout = (): void => {
    this.queueTimer = null;
    if (this.done) return;
    // No retry: the queued dispatch is still undici's and may yet call this handler.
    this.done = true;
    this.finishAttempt('timeout', 0);
    this.env.fail(
      this.ctx,
      problems.upstreamTimeout(`service "${this.service.name}" had no free connection in time`),
    );
  };

  private responseStarted(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    raw: readonly (Buffer | string)[],
  ): void {
    const res = this.ctx.res;
    if (res.destroyed || this.done) {
      controller.pause();
      return;
    }
    const rawHeaders = rawHeadersOf(raw);
    if (statusCode < 200) {
      // Informational (1xx) answer before the final one: relay 103 Early Hints, drop the rest.
      // (Passing a 1xx to writeHead would commit the status line and break the final response.)
      if (statusCode === 103) relayEarlyHints(res, rawHeaders);
      return;
    }
    if (this.retry.retriesStatus(statusCode)) {
      // the outcome goes to the breaker first, so a breaker this answer opens refuses the retry
      this.finishAttempt(null, statusCode);
      const delay = this.retryDelay(statusCode, retryAfterOf(rawHeaders));
      if (delay >= 0) {
        // Retried: read this answer to its end (keeping the connection) and throw it away.
        this.discarding = true;
        this.nextDelay = delay;
        return;
      }
    }
    const headers = responseHeaders(rawHeaders, this.ctx.requestId, this.env.isDraining(), this);
    this.ctx.responseHeaders(headers, statusCode);
    this.status = statusCode;
    if ((statusCode === 204 || statusCode === 304) && this.method !== 'HEAD' && declaresBody(rawHeaders)) {
      // A 304 may carry the Content-Length of the representation, but never a body. undici's
      // parser would wait for that many bytes anyway (and then time out): finish the response
      // now and drop that upstream connection instead.
      res.writeHead(statusCode, headers);
      res.end();
      this.done = true;
      this.finishAttempt(null, statusCode);
      controller.abort(new ClientGoneError());
      return;
    }
    // The status line waits for the first body byte or the end (node would not send it sooner:
    // writeHead only stores it). Until then `headersSent` stays false, so a body that breaks
    // before its first byte (an invalid chunk size, a reset, a body timeout) still gets a clean
    // problem answer, or a retry, instead of a cut connection.
    this.head = headers;
  }

  private writeHead(res: ServerResponse, head: string[]): void {
    this.head = null;
    res.writeHead(this.status, head);
  }

  private responseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.discarding) return;
    const res = this.ctx.res;
    if (this.head !== null) this.writeHead(res, this.head);
    res.bytesOut += chunk.length;
    if (chunk.length === this.contentLength) {
      // The whole (rest of the) body: one end() writes it with the headers in a single syscall,
      // without write()'s deferred uncork. done first: 'close' must not abort a finished exchange.
      this.done = true;
      this.contentLength = 0;
      res.end(chunk);
      if (res.writableLength > 0) this.watchSend(res); // the client has not taken it all yet
      return;
    }
    if (this.contentLength > 0) this.contentLength -= chunk.length;
    if (res.write(chunk)) return;
    controller.pause();
    if (res.destroyed) return;
    // Back-pressure: the upstream socket pauses until the client has taken what is buffered.
    res.once('drain', (this.onDrain ??= () => this.drained()));
    this.watchSend(res);
  }

  private drained(): void {
    this.sendWatch?.drained();
    this.controller?.resume();
  }

  private watchSend(res: ServerResponse): void {
    const limit = this.env.sendTimeout;
    if (limit <= 0 || res.destroyed) return;
    (this.sendWatch ??= new SendWatch(res, limit)).watch();
  }

  private responseEnd(controller: Dispatcher.DispatchController): void {
    if (this.discarding) {
      this.scheduleRetry(this.nextDelay);
      return;
    }
    this.done = true;
    this.finishAttempt(null, this.status);
    const res = this.ctx.res;
    const trailers = trailersOf(controller.rawTrailers);
    if (trailers !== null && !res.writableEnded) addTrailers(res, trailers);
    if (this.head !== null) {
      if (trailers === null && isHttp2(res)) {
        endHeadOnly(res, this.status, this.head); // e.g. a gRPC trailers-only answer
        this.head = null;
      } else this.writeHead(res, this.head);
    }
    if (!res.writableEnded) {
      res.end();
      if (res.writableLength > 0) this.watchSend(res);
    }
  }

  private responseError(_controller: Dispatcher.DispatchController, err: Error): void {
    const res = this.ctx.res;
    const failure = classify(err);
    if (failure !== 'client-gone') this.ctx.upstreamError = failureReason(failure, err);
    if (this.discarding) {
      // the retried answer broke off while being thrown away: retry as decided, unless the
      // client left meanwhile; then the retry's admission goes back (a half-open breaker's
      // probe slot would otherwise stay taken, and the breaker refuse everything for good)
      this.discarding = false;
      if (!this.done) this.scheduleRetry(this.nextDelay);
      else this.attempts.release();
      return;
    }
    this.finishAttempt(failure, 0);
    if (this.done && res.writableEnded) return; // we ended the response ourselves (bodyless 304)
    if (failure === 'client-gone' || res.destroyed) {
      this.done = true;
      res.destroy();
      return;
    }
    if (res.headersSent) {
      // The status line is gone already: cut the connection so the client sees a truncated
      // response, never a complete-looking one.
      this.done = true;
      res.destroy();
      return;
    }
    this.head = null; // this attempt's response never reached the client
    const reason = retryReasonOf(failure);
    const delay = reason === null ? -1 : this.retryDelay(reason, null);
    if (delay >= 0) {
      this.scheduleRetry(delay);
      return;
    }
    this.done = true;
    this.env.fail(this.ctx, problemFor(failure, this.service.name, this.ctx.route.bodyLimit));
  }

  /** Reports the current attempt's end to the service (once). */
  private finishAttempt(failure: UpstreamFailure | null, status: number): void {
    const ms = this.attempts.end(failure, status);
    if (ms >= 0) this.ctx.upstreamDurationMs = ms;
  }

  /** ms to wait before retrying after `reason`, or -1 when it is not retried (retry-policy.ts). */
  private retryDelay(reason: RetryReason, retryAfterMs: number | null): number {
    const ctx = this.ctx;
    const delay = this.attempts.retryDelay(
      ctx.attempts,
      reason,
      retryAfterMs,
      ctx.res.destroyed,
      this.bodyRead(),
    );
    // an unread wrapper around the request cannot be sent twice: the retry makes a fresh one
    if (delay >= 0 && this.body !== null && this.body !== ctx.req) this.body.destroy();
    return delay;
  }

  /** Some of the request body was read already (by undici, or a wrapper): it cannot be sent again. */
  private bodyRead(): boolean {
    const body = this.body;
    if (body === null) return false;
    return body.readableDidRead || this.ctx.req.readableDidRead;
  }

  private scheduleRetry(delay: number): void {
    this.discarding = false;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.done) this.attempts.release();
      else this.attempt(this.attempts.takeHeld());
    }, delay);
  }

  /** The client went away (or the response finished): stop the upstream exchange if still running. */
  readonly onClientClose = (): void => {
    if (this.queueTimer !== null) {
      clearTimeout(this.queueTimer);
      this.queueTimer = null;
    }
    this.sendWatch?.stop();
    if (this.done) return;
    this.done = true;
    if (this.retryTimer !== null) {
      clearTimeout(this.retryTimer);
      this.retryTimer = null;
      this.attempts.release();
      return;
    }
    this.controller?.abort(new ClientGoneError());
  };
}

class ClientGoneError extends Error {
  readonly code = 'UND_ERR_ABORTED';
  constructor() {
    super('client closed the connection');
  }
}

/**
 * The response head as the upstream sent it (names in its case, values as latin1 bytes, repeats in
 * order): undici's HTTP/1 and HTTP/2 clients give it as buffers; a dispatcher that gives strings
 * gets them turned into buffers.
 */
function rawHeadersOf(raw: readonly (Buffer | string)[]): Buffer[] {
  if (raw.length === 0 || Buffer.isBuffer(raw[0])) return raw as Buffer[];
  return raw.map((v) => (Buffer.isBuffer(v) ? v : Buffer.from(String(v), 'latin1')));
}

/** true when a Content-Length other than 0 is among the raw headers */
function declaresBody(raw: readonly Buffer[]): boolean {
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as Buffer;
    if (name.length === 14 && name.toString('latin1').toLowerCase() === 'content-length') {
      return (raw[i + 1] as Buffer).toString('latin1').trim() !== '0';
    }
  }
  return false;
}

/** Relays the Link headers of an upstream's 103 Early Hints (skipped when Node refuses them). */
function relayEarlyHints(res: ServerResponse, raw: readonly Buffer[]): void {
  const link: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    if ((raw[i] as Buffer).toString('latin1').toLowerCase() === 'link')
      link.push((raw[i + 1] as Buffer).toString('latin1'));
  }
  if (link.length === 0) return;
  try {
    res.writeEarlyHints({ link });
  } catch {
    // an invalid Link value: hints are optional, drop them
  }
}
