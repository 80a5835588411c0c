/**
 * The data plane's response object: node's ServerResponse with the few fields the end of a
 * request needs (metrics, access log, span), set as the request goes. A subclass handed to
 * `createServer`, so recording a request costs no closure and no side table. For an upgrade,
 * one stands in for the response (never written: answers go to the raw socket).
 */
import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { TraceContext } from '../observability/tracing/index.js';
import type { RequestContext } from '../stages/stage.js';

export class GatewayResponse<
  Request extends IncomingMessage = IncomingMessage,
> extends ServerResponse<Request> {
  /** performance.now() when the request arrived */
  startTime = 0;
  requestId = '';
  /** declared request body length (-1 = chunked): an unread body means closing after an error */
  bodyLength = 0;
  /** set once a route matched */
  ctx: RequestContext<GatewayResponse> | null = null;
  trace: TraceContext | null = null;
  /** the problem code when the gateway answered with an error */
  problemCode: string | null = null;
  /** response body bytes written (counted by the proxy and by problem answers) */
  bytesOut = 0;
  /** the upstream exchange in progress: told when the response closes (data-plane.ts) */
  exchange: { onClientClose(): void } | null = null;
  /** an upgrade: its raw socket (answers are written there) and the bytes after its head */
  upgrade: { readonly socket: Socket; readonly head: Buffer } | null = null;
  /** an upgrade's answer was recorded (metrics, access log): once */
  observed = false;
}
