import type { IncomingMessage } from 'node:http';
import type { Consumer } from '../auth/types.js';
import type { DecisionResult } from '../observability/metrics.js';
import type { TraceContext } from '../observability/tracing/index.js';
import type { GatewayResponse } from '../server/response.js';
import type { CompiledRoute } from './route.js';

/**
 * What one request carries through the pipeline. Stages read from it and record what they
 * learn (later: consumer, roles, tier); they never talk to each other directly.
 * A class, so every context has one shape.
 */
export class RequestContext {
  /** set by stages that authenticate (issue: authentication) */
  consumer: Consumer | null = null;
  /** headers stages add to the response (e.g. RateLimit), as a flat [name, value, ...] list */
  extraResponseHeaders: string[] | null = null;
  /** set when the client sent `Expect: 100-continue`: the 100 is sent only once we proxy */
  expectContinue = false;
  /** the rate-limit decision, when the route is rate-limited (access log) */
  rateLimit: DecisionResult | null = null;
  /** the tier the request was counted under (access log) */
  tier: string | null = null;
  /** the request's W3C trace context (continued or started) */
  trace: TraceContext | null = null;
  /** request body bytes sent upstream (a declared length, or counted for chunked bodies) */
  bytesIn = 0;
  /** upstream attempts made (retries included); 0 = never proxied */
  attempts = 0;
  /** the target of the last attempt ("host:port") */
  upstream: string | null = null;
  /** milliseconds the last attempt took, until its response ended or failed */
  upstreamDurationMs = -1;

  constructor(
    readonly req: IncomingMessage,
    readonly res: GatewayResponse,
    readonly requestId: string,
    readonly route: CompiledRoute,
    /** normalised path, the one routing and the upstream see */
    readonly path: string,
    readonly query: string,
    readonly clientIp: string,
    /** request headers to send upstream: a flat [name, value, ...] list, already cleaned */
    readonly upstreamHeaders: string[],
    /** declared body length; -1 = chunked; 0 = no body */
    readonly bodyLength: number,
    readonly startTime: number,
  ) {}
}
