/**
 * The data plane's response object: node's ServerResponse with the few fields the end of a
 * request needs (metrics, access log, span), set as the request goes. A subclass handed to
 * `createServer`, so recording a request costs no closure and no side table.
 */
import { ServerResponse, type IncomingMessage } from 'node:http';
import type { TraceContext } from '../observability/tracing/index.js';
import type { RequestContext } from '../pipeline/context.js';

export class GatewayResponse<
  Request extends IncomingMessage = IncomingMessage,
> extends ServerResponse<Request> {
  /** performance.now() when the request arrived */
  startTime = 0;
  requestId = '';
  /** set once a route matched */
  ctx: RequestContext | null = null;
  trace: TraceContext | null = null;
  /** the problem code when the gateway answered with an error */
  problemCode: string | null = null;
  /** response body bytes written (counted by the proxy and by problem answers) */
  bytesOut = 0;
  /** the upstream exchange in progress: told when the response closes (data-plane.ts) */
  exchange: { onClientClose(): void } | null = null;
}
