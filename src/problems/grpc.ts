/**
 * Gateway errors on gRPC requests: a gRPC client reads the status from `grpc-status` and
 * `grpc-message`, never from the HTTP status or a problem+json body, so the problem is sent as
 * a "trailers-only" response (HTTP 200, `content-type: application/grpc`, the status in the
 * headers and no body), the form gRPC servers use for an error before any message.
 *
 * The status follows gRPC's HTTP-to-status mapping, with the gateway's codes made precise:
 * a timeout is DEADLINE_EXCEEDED, a rate limit or an oversized request RESOURCE_EXHAUSTED.
 *
 * A leaf module like the registry: it imports nothing of the project but the registry's types.
 */
import type { ServerResponse } from 'node:http';
import type { Problem } from './registry.js';

export const GrpcStatus = {
  UNKNOWN: 2,
  DEADLINE_EXCEEDED: 4,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/** A gRPC request (`application/grpc`, `application/grpc+proto`, ...; not gRPC-Web). */
export function isGrpc(contentType: string | undefined): boolean {
  if (contentType === undefined || !contentType.startsWith('application/grpc')) return false;
  if (contentType.length === 16) return true;
  const next = contentType.charCodeAt(16);
  return next === 0x2b /* + */ || next === 0x3b; /* ; */
}

/** The gRPC status code for a problem. */
export function grpcStatusOf(p: Problem): number {
  switch (p.status) {
    case 401:
      return GrpcStatus.UNAUTHENTICATED;
    case 403:
      return GrpcStatus.PERMISSION_DENIED;
    case 404:
    case 405:
      return GrpcStatus.UNIMPLEMENTED; // no route: the method does not exist behind the gateway
    case 408:
    case 504:
      return GrpcStatus.DEADLINE_EXCEEDED;
    case 409:
      return GrpcStatus.FAILED_PRECONDITION;
    case 413:
    case 414:
    case 429:
    case 431:
      return GrpcStatus.RESOURCE_EXHAUSTED;
    case 502:
    case 503:
      return GrpcStatus.UNAVAILABLE;
    case 400:
    case 500:
    case 505:
      return GrpcStatus.INTERNAL;
    default:
      return GrpcStatus.UNKNOWN;
  }
}

/** grpc-message is percent-encoded: bytes outside printable ASCII, and "%" itself. */
export function grpcMessage(text: string): string {
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

/**
 * Writes `p` as a trailers-only gRPC response. `close` ends an HTTP/1.1 connection after it
 * (HTTP/2 has no connection header: a stream ends on its own).
 */
export function writeGrpcProblem(res: ServerResponse, p: Problem, requestId: string, close: boolean): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  res.statusCode = 200;
  res.setHeader('content-type', 'application/grpc');
  res.setHeader('grpc-status', String(grpcStatusOf(p)));
  res.setHeader('grpc-message', grpcMessage(`${p.code}: ${p.detail}`));
  res.setHeader('x-request-id', requestId);
  if (p.headers) {
    for (let i = 0; i + 1 < p.headers.length; i += 2)
      res.setHeader(p.headers[i] as string, p.headers[i + 1] as string);
  }
  if (res.req.httpVersionMajor === 1) {
    res.setHeader('content-length', '0');
    if (close) res.setHeader('connection', 'close');
  }
  // no writeHead: on HTTP/2 it sends the headers at once, without END_STREAM, and a gRPC client
  // then finds no status (trailers-only means one HEADERS frame that ends the stream)
  res.end();
}
