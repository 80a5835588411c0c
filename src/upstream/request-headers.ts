/**
 * One pass over the client's raw headers: what the gateway needs to know, and the cleaned
 * list to send upstream (hop-by-hop headers, the ones `Connection` names, client-sent
 * `X-Consumer-*`, and the headers the gateway sets itself are left out).
 *
 * Names spelt with `_` instead of `-` (`X-Consumer_Id`, `X_Forwarded_For`) are dropped when
 * they would stand for one of those: CGI-style upstreams (WSGI, PHP, Rack) map both spellings
 * to the same variable, so they would otherwise spoof what the gateway sets.
 * The gateway's own headers (`X-Request-Id`, `X-Forwarded-*`, `traceparent`, `tracestate` and
 * `Content-Length`) are added after the removal of what `Connection` names, so a client cannot
 * strip them that way.
 * Refused (`invalid`): contradictory framing, several or malformed `Host`, more fields than node
 * keeps, and an upgrade to anything but WebSocket.
 */
import { isValidHost } from '../router/host.js';

export type RequestHeaderScan = {
  forward: string[];
  host: string | undefined;
  requestId: string | undefined;
  forwardedFor: string | undefined;
  forwardedProto: string | undefined;
  forwardedHost: string | undefined;
  /** W3C trace context: replaced upstream by the gateway's own (tracing) */
  traceparent: string | undefined;
  tracestate: string | undefined;
  /** -1: chunked; 0: none; n: declared length */
  bodyLength: number;
  /** set when the headers are contradictory or unsupported */
  invalid: string | undefined;
};

/**
 * node's parser stops collecting header fields once `rawHeaders` holds 2000 entries (its
 * `maxHeaderPairs` default; 1000 fields): the fields after that are dropped without a word,
 * yet the parser still frames the body by them (a `Content-Length` there is invisible here).
 * A request that reaches the limit is refused, so the gateway never acts on a partial view.
 */
export const MAX_RAW_HEADER_ENTRIES = 2000;

/** 1 = drop, 2 = drop but read */
const SPECIAL = new Map<string, number>([
  ['connection', 2],
  ['keep-alive', 1],
  ['proxy-connection', 1],
  ['proxy-authorization', 1],
  ['proxy-authenticate', 1],
  ['te', 1],
  ['trailer', 1],
  ['transfer-encoding', 2],
  ['upgrade', 2],
  ['expect', 1],
  // Method overrides: the route (and its permissions) were chosen for the request's method; an
  // upstream honouring these (Express method-override, ASP.NET, ...) would run another one.
  ['x-http-method-override', 1],
  ['x-http-method', 1],
  ['x-method-override', 1],
  ['host', 2],
  ['x-request-id', 2],
  ['x-forwarded-for', 2],
  ['x-forwarded-proto', 2],
  ['x-forwarded-host', 2],
  ['content-length', 2],
  ['traceparent', 2],
  ['tracestate', 2],
]);

const join = (a: string | undefined, b: string) => (a === undefined ? b : `${a}, ${b}`);

export function scanRequestHeaders(raw: readonly string[]): RequestHeaderScan {
  const forward: string[] = [];
  const scan: RequestHeaderScan = {
    forward,
    host: undefined,
    requestId: undefined,
    forwardedFor: undefined,
    forwardedProto: undefined,
    forwardedHost: undefined,
    traceparent: undefined,
    tracestate: undefined,
    bodyLength: 0,
    invalid: undefined,
  };
  let connection: string | undefined;
  let contentLength: string | undefined;
  let transferEncoding: string | undefined;
  let upgrade: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    const lower = name.toLowerCase();
    const special = SPECIAL.get(lower);
    if (special === undefined) {
      if (lower.startsWith('x-consumer-') || (lower.includes('_') && isReservedAlias(lower))) continue;
      forward.push(lower, value);
      continue;
    }
    if (special === 1) continue;
    switch (lower) {
      case 'connection':
        connection = join(connection, value);
        break;
      case 'transfer-encoding':
        transferEncoding = join(transferEncoding, value);
        break;
      case 'upgrade':
        upgrade = join(upgrade, value);
        break;
      case 'host':
        if (scan.host !== undefined) scan.invalid = 'multiple Host headers';
        else if (!isValidHost(value)) scan.invalid = 'invalid Host header';
        scan.host = value;
        break;
      case 'x-request-id':
        scan.requestId = scan.requestId === undefined ? value : '';
        break;
      case 'x-forwarded-for':
        scan.forwardedFor = join(scan.forwardedFor, value);
        break;
      case 'x-forwarded-proto':
        scan.forwardedProto = value;
        break;
      case 'x-forwarded-host':
        scan.forwardedHost = value;
        break;
      case 'traceparent':
        // several traceparent headers are invalid: start a new trace rather than pick one
        scan.traceparent = scan.traceparent === undefined ? value : '';
        break;
      case 'tracestate':
        scan.tracestate = join(scan.tracestate, value);
        break;
      case 'content-length':
        if (contentLength !== undefined && contentLength !== value)
          scan.invalid = 'conflicting Content-Length headers';
        contentLength = value;
        break;
    }
  }
  if (raw.length >= MAX_RAW_HEADER_ENTRIES) scan.invalid = 'too many header fields';
  if (transferEncoding !== undefined) {
    // Node's parser already refuses TE together with CL; we only ever forward plain "chunked".
    if (transferEncoding.trim().toLowerCase() !== 'chunked') scan.invalid = 'unsupported Transfer-Encoding';
    else if (contentLength !== undefined) scan.invalid = 'both Content-Length and Transfer-Encoding';
    scan.bodyLength = -1;
  } else if (contentLength !== undefined) {
    if (!/^\d{1,15}$/.test(contentLength)) scan.invalid = 'invalid Content-Length';
    else scan.bodyLength = Number(contentLength);
  }
  if (connection !== undefined) {
    const tokens = connectionTokens(connection);
    // An upgrade is a tunnel to the upstream, outside routing: only WebSocket is relayed. Any
    // other protocol (h2c above all) would let the client send the upstream requests for
    // paths no route allows.
    if (upgrade !== undefined && tokens.includes('upgrade') && upgrade.trim().toLowerCase() !== 'websocket') {
      scan.invalid = 'unsupported Upgrade (only websocket is relayed)';
    }
    dropNamedByConnection(forward, tokens);
  }
  // After the Connection-named removal: `Connection: content-length` must not change the framing.
  if (scan.bodyLength > 0) forward.push('content-length', String(scan.bodyLength));
  return scan;
}

/** `x_forwarded_for`, `x-consumer_id`, `content_length`: an alias of a header the gateway controls. */
function isReservedAlias(lower: string): boolean {
  const dashed = lower.replaceAll('_', '-');
  return SPECIAL.has(dashed) || dashed.startsWith('x-consumer-');
}

const connectionTokens = (connection: string) =>
  connection
    .toLowerCase()
    .split(',')
    .map((t) => t.trim());

/** Removes the headers a `Connection` header names (other than the usual close/keep-alive/upgrade). */
function dropNamedByConnection(forward: string[], tokens: readonly string[]): void {
  const named = tokens.filter((t) => t !== '' && t !== 'close' && t !== 'keep-alive' && t !== 'upgrade');
  if (named.length === 0) return;
  for (let i = forward.length - 2; i >= 0; i -= 2) {
    if (named.includes(forward[i] as string)) forward.splice(i, 2);
  }
}
