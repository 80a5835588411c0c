import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Consumer } from '../auth/types.js';
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
  /** upstream attempts made (retries included); 0 = never proxied */
  attempts = 0;
  /** the target of the last attempt ("host:port") */
  upstream: string | null = null;
  /** milliseconds the last attempt took, until its response ended or failed */
  upstreamDurationMs = -1;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
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
