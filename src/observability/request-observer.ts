/**
 * The end of every data-plane request: the request metrics, the access-log record and the
 * server span, taken when the response closes (finished, or cut). Nothing here is awaited: the
 * metrics are in-memory counters, the access log only queues, and span export is batched.
 */
import type { IncomingMessage } from 'node:http';
import type { AccessLog, AccessRecord } from './access-log/index.js';
import { isoTime } from './access-log/index.js';
import type { GatewayMetrics } from './metrics.js';
import type { TraceContext, Tracing } from './tracing/index.js';

/** What the observer reads of a finished request: the server's response object is one. */
export interface ObservedResponse {
  readonly req: IncomingMessage;
  readonly headersSent: boolean;
  readonly statusCode: number;
  /** performance.now() when the request arrived */
  readonly startTime: number;
  readonly requestId: string;
  readonly trace: TraceContext | null;
  readonly problemCode: string | null;
  readonly bytesOut: number;
  /** null when the request was answered before it was routed */
  readonly ctx: ObservedContext | null;
}

/** What the observer reads of a routed request (the pipeline's request context is one). */
export interface ObservedContext {
  readonly route: {
    readonly name: string;
    readonly config: { readonly match: { readonly path: string } };
  };
  /**
   * the service the request went to (or would have, had it not been refused first); null on a
   * route that answers itself (`respond`, `redirect`)
   */
  readonly service: { readonly name: string } | null;
  readonly path: string;
  readonly clientIp: string;
  readonly upstream: string | null;
  readonly upstreamDurationMs: number;
  readonly upstreamError: string | null;
  readonly attempts: number;
  readonly bodyLength: number;
  readonly bytesIn: number;
  /** the route's stages fill in their fields (consumer, tier, rate-limit decision) */
  log(record: AccessRecord): void;
}

// Read once: the getter is not free, and the origin does not change.
const TIME_ORIGIN = performance.timeOrigin;

/** Status counted when the client left before any answer was sent (nginx's convention). */
export const CLIENT_CLOSED = 499;

/** Longest path kept in an access-log record for a request no route matched. */
const MAX_LOGGED_PATH = 2048;

export class RequestObserver {
  constructor(
    private readonly metrics: GatewayMetrics | null,
    private readonly accessLog: AccessLog | null,
    private readonly tracing: Tracing | null,
  ) {}

  /** A response closed (finished or cut). */
  record(res: ObservedResponse): void {
    this.recordAs(res, res.headersSent ? res.statusCode : CLIENT_CLOSED);
  }

  /** A request whose answer went out another way (an upgrade's socket), with that status. */
  recordAs(res: ObservedResponse, status: number): void {
    const ms = performance.now() - res.startTime;
    const ctx = res.ctx;
    const method = res.req.method ?? 'GET';
    if (ctx === null) this.metrics?.recordRequest('', '', method, status, ms / 1000);
    else this.metrics?.recordRequest(ctx.route.name, ctx.service?.name ?? '', method, status, ms / 1000);
    if (this.accessLog?.enabled === true) this.accessLog.push(accessRecord(res, status, ms));
    const trace = res.trace;
    if (trace !== null && trace.sampled && this.tracing !== null) {
      this.tracing.end(trace, {
        route: ctx === null ? null : ctx.route.config.match.path,
        method,
        status: status === CLIENT_CLOSED ? 0 : status,
        service: ctx?.service?.name ?? null,
        target: ctx?.upstream ?? null,
        error: res.problemCode,
      });
    }
  }
}

export function accessRecord(res: ObservedResponse, status: number, ms: number): AccessRecord {
  const ctx = res.ctx;
  const req = res.req;
  const record: AccessRecord = {
    time: isoTime(TIME_ORIGIN + res.startTime),
    requestId: res.requestId,
    traceId: res.trace?.traceId ?? null,
    route: ctx === null ? null : ctx.route.name,
    method: req.method ?? '',
    path: ctx === null ? rawPath(req.url ?? '') : ctx.path,
    status,
    durationMs: Math.round(ms * 1000) / 1000,
    clientIp: ctx === null ? (req.socket.remoteAddress ?? '') : ctx.clientIp,
    upstream: ctx?.upstream ?? null,
    upstreamDurationMs:
      ctx === null || ctx.upstreamDurationMs < 0 ? null : Math.round(ctx.upstreamDurationMs * 1000) / 1000,
    upstreamError: ctx?.upstreamError ?? null,
    attempts: ctx?.attempts ?? 0,
    consumerId: null,
    tier: null,
    bytesIn: ctx === null ? 0 : ctx.bodyLength > 0 ? ctx.bodyLength : ctx.bytesIn,
    bytesOut: res.bytesOut,
    rateLimit: null,
    error: res.problemCode,
  };
  ctx?.log(record);
  return record;
}

/** The path of a request target that was not routed: no query (it may hold secrets), bounded. */
function rawPath(url: string): string {
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  return path.length > MAX_LOGGED_PATH ? path.slice(0, MAX_LOGGED_PATH) : path;
}
