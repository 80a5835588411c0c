import type { IncomingMessage } from 'node:http';
import type { Consumer } from '../auth/types.js';
import type { DecisionResult } from '../observability/metrics.js';
import type { ProxyRequest, ProxyResponse } from '../upstream/proxy.js';
import type { CompiledRoute } from './route.js';

const NO_HEADERS: string[] = [];

/**
 * What one request carries through the pipeline. Stages read from it and record what they
 * learn (consumer, roles, tier); they never talk to each other directly. A class, so every
 * context has one shape. Created by the server once the request is routed; the server sets the
 * fields below the constructor before the stages run (no allocation beyond the object itself).
 * `Res` is the server's response object; stages see it only as a `ProxyResponse`.
 */
export class RequestContext<Res extends ProxyResponse = ProxyResponse> implements ProxyRequest {
  /** set by stages that authenticate */
  consumer: Consumer | null = null;
  /** headers stages add to the response (e.g. RateLimit), as a flat [name, value, ...] list */
  extraResponseHeaders: string[] | null = null;
  /** the rate-limit decision, when the route is rate-limited (access log) */
  rateLimit: DecisionResult | null = null;
  /** the tier the request was counted under (access log) */
  tier: string | null = null;

  // set by the server before the stages run
  requestId = '';
  /** normalised path, the one routing and the upstream see */
  path = '';
  query = '';
  clientIp = '';
  /** request headers to send upstream: a flat [name, value, ...] list, already cleaned */
  upstreamHeaders: string[] = NO_HEADERS;
  /** declared body length; -1 = chunked; 0 = no body */
  bodyLength = 0;
  /** performance.now() when the request arrived */
  startTime = 0;
  /** set when the client sent `Expect: 100-continue`: the 100 is sent only once we proxy */
  expectContinue = false;

  // recorded by the proxy
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
    readonly res: Res,
    readonly route: CompiledRoute,
  ) {}
}
