/**
 * The last step of the pipeline: the request goes to a target of the route's service through
 * its undici pool, and the response streams back. undici's low-level `dispatch` is used with a
 * handler object (no stream wrappers, no promise per chunk): the upstream body is written to the
 * client as it arrives, and the upstream socket is paused whenever the client cannot keep up.
 */
import { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
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

export function forward(ctx: RequestContext, env: ProxyEnv): void {
  const route = ctx.route;
  const target = route.service.pick();
  let path = ctx.path;
  if (route.stripLength > 0) {
    path = path.length > route.stripLength ? path.slice(route.stripLength) : '/';
    if (path.charCodeAt(0) !== 0x2f) path = '/' + path;
  }
  if (ctx.query !== '') path += '?' + ctx.query;

  const req = ctx.req;
  let body: Readable | null = null;
  if (ctx.bodyLength > 0) body = req;
  else if (ctx.bodyLength < 0) body = Readable.from(limitedBody(req, env.bodyLimit), { objectMode: false });
  if (ctx.expectContinue) ctx.res.writeContinue();

  const exchange = new Exchange(ctx, env, route.service.name);
  ctx.res.once('close', exchange.onClientClose);
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
    res.writeHead(statusCode, responseHeaders(rawHeaders, this.ctx.requestId, this.env.isDraining()));
    this.resume = resume;
    return true;
  }

  private resume: (() => void) | null = null;

  onData(chunk: Buffer): boolean {
    const res = this.ctx.res;
    if (res.write(chunk)) return true;
    if (this.resume !== null && !res.destroyed) res.once('drain', this.resume);
    return false;
  }

  onComplete(): void {
    this.done = true;
    this.ctx.res.end();
  }

  onError(err: Error): void {
    this.done = true;
    const res = this.ctx.res;
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
