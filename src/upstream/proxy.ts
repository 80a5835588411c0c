/**
 * The last step of the pipeline: the request goes to a target of the route's service through
 * its undici pool, and the response streams back. undici's low-level `dispatch` is used with a
 * handler object (no stream wrappers, no promise per chunk): the upstream body is written to the
 * client as it arrives, and the upstream socket is paused whenever the client cannot keep up.
 */
import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { Consumer } from '../auth/types.js';
import type { RequestContext } from '../pipeline/context.js';
import { sendProblem } from '../server/respond.js';
import { classify, problemFor } from './errors.js';
import { limitedBody } from './request-body.js';
import { responseHeaders } from './response-headers.js';

export type ProxyEnv = {
  readonly bodyLimit: number;
  /** true while draining: responses then close their connections */
  isDraining(): boolean;
};

/** The path the upstream gets: the normalised path less `stripPrefix`, and the query. */
export function upstreamPath(ctx: RequestContext): string {
  const strip = ctx.route.stripLength;
  let path = ctx.path;
  if (strip > 0) {
    path = path.length > strip ? path.slice(strip) : '/';
    if (path.charCodeAt(0) !== 0x2f) path = '/' + path;
  }
  return ctx.query === '' ? path : path + '?' + ctx.query;
}

export function forward(ctx: RequestContext, env: ProxyEnv): void {
  const route = ctx.route;
  const target = route.service.pick();
  const path = upstreamPath(ctx);

  const req = ctx.req;
  let body: Readable | null = null;
  if (ctx.bodyLength > 0) body = req;
  else if (ctx.bodyLength < 0) body = Readable.from(limitedBody(req, env.bodyLimit), { objectMode: false });
  if (ctx.consumer !== null) appendConsumer(ctx.upstreamHeaders, ctx.consumer);
  if (ctx.expectContinue) ctx.res.writeContinue();

  const exchange = new Exchange(ctx, env, route.service.name);
  ctx.res.on('close', exchange.onClientClose); // 'close' comes once; `on` avoids once()'s wrapper
  target.pool.dispatch(
    { path, method: req.method as Dispatcher.HttpMethod, headers: ctx.upstreamHeaders, body },
    exchange,
  );
}

class Exchange implements Dispatcher.DispatchHandlers {
  private abort: ((err?: Error) => void) | null = null;
  private done = false;

  constructor(
    private readonly ctx: RequestContext,
    private readonly env: ProxyEnv,
    private readonly service: string,
  ) {}

  onConnect(abort: (err?: Error) => void): void {
    this.abort = abort;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    const res = this.ctx.res;
    if (res.destroyed) return false;
    if (statusCode < 200) {
      // Informational (1xx) answer before the final one: relay 103 Early Hints, drop the rest.
      // (Passing a 1xx to writeHead would commit the status line and break the final response.)
      if (statusCode === 103) relayEarlyHints(res, rawHeaders);
      return true;
    }
    const headers = responseHeaders(rawHeaders, this.ctx.requestId, this.env.isDraining(), this);
    const extra = this.ctx.extraResponseHeaders;
    if (extra !== null) appendOwnHeaders(headers, extra);
    res.writeHead(statusCode, headers);
    this.resume = resume;
    if (
      (statusCode === 204 || statusCode === 304) &&
      this.ctx.req.method !== 'HEAD' &&
      declaresBody(rawHeaders)
    ) {
      // A 304 may carry the Content-Length of the representation, but never a body. undici's
      // parser would wait for that many bytes anyway (and then time out): finish the response
      // now and drop that upstream connection instead.
      res.end();
      this.done = true;
      this.abort?.(new ClientGoneError());
      return false;
    }
    return true;
  }

  private resume: (() => void) | null = null;
  /** the upstream's Content-Length, counted down as the body arrives; -1 = unknown (chunked) */
  contentLength = -1;

  onData(chunk: Buffer): boolean {
    const res = this.ctx.res;
    if (chunk.length === this.contentLength) {
      // The whole (rest of the) body: one end() writes it with the headers in a single syscall,
      // without write()'s deferred uncork. done first: 'close' must not abort a finished exchange.
      this.done = true;
      this.contentLength = 0;
      res.end(chunk);
      return true;
    }
    if (this.contentLength > 0) this.contentLength -= chunk.length;
    if (res.write(chunk)) return true;
    if (this.resume !== null && !res.destroyed) res.once('drain', this.resume);
    return false;
  }

  onComplete(): void {
    this.done = true;
    if (!this.ctx.res.writableEnded) this.ctx.res.end();
  }

  onError(err: Error): void {
    const res = this.ctx.res;
    if (this.done && res.writableEnded) return; // we ended the response ourselves (bodyless 304)
    this.done = true;
    const failure = classify(err);
    if (failure === 'client-gone' || res.destroyed) {
      res.destroy();
      return;
    }
    if (res.headersSent) {
      // The status line is gone already: cut the connection so the client sees a truncated
      // response, never a complete-looking one.
      res.destroy();
      return;
    }
    const close = this.ctx.bodyLength !== 0 || this.env.isDraining();
    sendProblem(res, problemFor(failure, this.service, this.env.bodyLimit), this.ctx.requestId, close);
  }

  /** The client went away (or the response finished): stop the upstream exchange if still running. */
  readonly onClientClose = (): void => {
    if (this.done) return;
    this.done = true;
    this.abort?.(new ClientGoneError());
  };
}

class ClientGoneError extends Error {
  readonly code = 'UND_ERR_ABORTED';
  constructor() {
    super('client closed the connection');
  }
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

/**
 * Adds the gateway's own response headers (e.g. RateLimit) in place of any the upstream sent
 * under the same names, so the client never sees two conflicting copies.
 */
function appendOwnHeaders(headers: string[], own: readonly string[]): void {
  for (let i = headers.length - 2; i >= 0; i -= 2) {
    const name = (headers[i] as string).toLowerCase();
    for (let j = 0; j < own.length; j += 2) {
      if (own[j] === name) {
        headers.splice(i, 2);
        break;
      }
    }
  }
  for (let i = 0; i < own.length; i++) headers.push(own[i] as string);
}

/** X-Consumer-* for the upstream (client-sent ones were removed by the header scan). */
function appendConsumer(headers: string[], consumer: Consumer): void {
  headers.push(
    'x-consumer-id',
    headerSafe(consumer.id),
    'x-consumer-tier',
    headerSafe(consumer.tier),
    'x-consumer-roles',
    headerSafe(consumer.roles.join(',')),
  );
}

/** Identity values come from tokens and keys: anything outside printable ASCII is %-encoded. */
const headerSafe = (v: string): string => (/^[\x20-\x7e]*$/.test(v) ? v : encodeURIComponent(v));
