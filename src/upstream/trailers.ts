/**
 * Response trailers from the upstream to the client (gRPC's `grpc-status` and `grpc-message`
 * travel there). undici leaves them on the controller as it got them: a [name, value, ...] list
 * of Buffers from its HTTP/1.1 parser, an object from node:http2. The client's response sends
 * them after the body: chunked HTTP/1.1 (node drops them on a response with a Content-Length, as
 * HTTP/1.1 has nowhere to put them) or an HTTP/2 trailing HEADERS frame.
 */
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';

/** Names that may not be trailers (RFC 9110 §6.5.1: framing, routing, connection-specific). */
const NOT_TRAILERS = new Set([
  'content-length',
  'content-type',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'upgrade',
  'host',
  'x-request-id',
]);

/** The upstream's trailers fit to send on, or null when it sent none. */
export function trailersOf(raw: unknown): OutgoingHttpHeaders | null {
  if (raw === null || typeof raw !== 'object') return null;
  let out: OutgoingHttpHeaders | null = null;
  const add = (name: string, value: string): void => {
    const lower = name.toLowerCase();
    if (lower.length === 0 || lower.charCodeAt(0) === 0x3a || NOT_TRAILERS.has(lower)) return;
    out ??= {};
    const had = out[lower];
    if (had === undefined) out[lower] = value;
    else out[lower] = Array.isArray(had) ? [...had, value] : [String(had), value];
  };
  if (Array.isArray(raw)) {
    if (raw.length === 0) return null;
    for (let i = 0; i + 1 < raw.length; i += 2) add(String(raw[i]), String(raw[i + 1]));
    return out;
  }
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    if (Array.isArray(value)) for (const v of value) add(name, String(v));
    else if (value !== undefined) add(name, String(value));
  }
  return out;
}

/** Sends them after the body; a name or value node refuses (from a hostile upstream) drops them all. */
export function addTrailers(res: ServerResponse, trailers: OutgoingHttpHeaders): void {
  try {
    res.addTrailers(trailers);
  } catch {
    // ERR_INVALID_HTTP_TOKEN / ERR_INVALID_CHAR: thrown out of undici's callback it would cut the response
  }
}

/** The client's response is an HTTP/2 stream (the server's HTTP/2 response marks itself so). */
export function isHttp2(res: ServerResponse): boolean {
  return (res as { http2?: boolean }).http2 === true;
}

/** Headers a response over HTTP/2 may not carry. */
const CONNECTION_SPECIFIC = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
]);

/**
 * Ends a bodyless HTTP/2 response with its head in one HEADERS frame that ends the stream. Its
 * writeHead would send the headers at once without END_STREAM and end the stream after: a gRPC
 * client reads a status only from a HEADERS frame that ends the stream (a "trailers-only"
 * answer), so the head is set and sent by end() instead.
 */
export function endHeadOnly(res: ServerResponse, status: number, head: readonly string[]): void {
  res.statusCode = status;
  const values = new Map<string, string[]>();
  for (let i = 0; i + 1 < head.length; i += 2) {
    const name = (head[i] as string).toLowerCase();
    if (CONNECTION_SPECIFIC.has(name)) continue;
    const list = values.get(name);
    if (list === undefined) values.set(name, [head[i + 1] as string]);
    else list.push(head[i + 1] as string);
  }
  try {
    for (const [name, list] of values) res.setHeader(name, list.length === 1 ? (list[0] as string) : list);
  } catch {
    // a header node refuses: the response cannot be sent as the upstream meant it
    res.destroy();
    return;
  }
  res.end();
}
