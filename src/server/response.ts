/**
 * The data plane's response objects: node's ServerResponse (HTTP/1) and Http2ServerResponse
 * (HTTP/2's compatibility API) with the few fields the end of a request needs (metrics, access
 * log, span), set as the request goes. Subclasses handed to the servers (`ServerResponse`,
 * `Http1ServerResponse`, `Http2ServerResponse` options), so recording a request costs no closure
 * and no side table. For an upgrade, one stands in for the response (never written: answers go
 * to the raw socket).
 *
 * The request flow and the proxy use only what both kinds have (writeHead with a flat header
 * list, write, end, destroy, 'drain', 'close', headersSent, writableLength...): an HTTP/2 response
 * goes through them typed as a GatewayResponse (request-flow.ts `requestH2`). What differs is
 * handled here, in the HTTP/2 class, so the HTTP/1 path pays nothing for it: connection-specific
 * headers are dropped (RFC 9113 §8.2.2) and there is no reason phrase.
 */
import { ServerResponse, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { Http2ServerResponse } from 'node:http2';
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
  /** an HTTP/2 stream (GatewayH2Response): on the prototype, so no field per response */
  declare readonly http2: boolean;
}
Object.defineProperty(GatewayResponse.prototype, 'http2', { value: false });

/** Response headers HTTP/2 forbids (RFC 9113 §8.2.2); node would warn and drop each one. */
const CONNECTION_SPECIFIC = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
]);

/** The same fields on an HTTP/2 stream's response. */
export class GatewayH2Response extends Http2ServerResponse {
  startTime = 0;
  requestId = '';
  bodyLength = 0;
  ctx: RequestContext<GatewayResponse> | null = null;
  trace: TraceContext | null = null;
  problemCode: string | null = null;
  bytesOut = 0;
  exchange: { onClientClose(): void } | null = null;
  readonly upgrade = null;
  observed = false;
  declare readonly http2: boolean;

  /**
   * writeHead(status, [reason], headers) as the HTTP/1 response takes it: the reason is dropped
   * (HTTP/2 has none) and so are connection-specific headers in a flat list.
   */
  override writeHead(statusCode: number, reasonOrHeaders?: unknown, headers?: unknown): this {
    const list = typeof reasonOrHeaders === 'string' ? headers : reasonOrHeaders;
    if (Array.isArray(list)) {
      const kept: string[] = [];
      for (let i = 0; i < list.length; i += 2) {
        const name = String(list[i]);
        if (!CONNECTION_SPECIFIC.has(name.toLowerCase())) kept.push(name, String(list[i + 1]));
      }
      // node takes a flat list here as its HTTP/1 response does (its types say only an object)
      return super.writeHead(statusCode, kept as unknown as OutgoingHttpHeaders);
    }
    return super.writeHead(statusCode, list as OutgoingHttpHeaders | undefined);
  }
}
Object.defineProperty(GatewayH2Response.prototype, 'http2', { value: true });
