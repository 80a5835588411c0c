/**
 * One pass over the client's raw headers: what the gateway needs to know, and the cleaned
 * list to send upstream (hop-by-hop headers, the ones `Connection` names, client-sent
 * `X-Consumer-*`, the headers the gateway sets itself, and the proxy and rewrite headers an
 * upstream would act on are left out; docs/security.md#headers).
 *
 * Each name costs one Map lookup; only a name not in the map is looked at further (the
 * `x-consumer-` prefix, an `_`). Names with `_` are dropped by default
 * (`limits.headersWithUnderscores`): CGI-style upstreams (WSGI, PHP, Rack) map `_` and `-` to
 * the same variable, so `X_Real_IP` would reach them as `X-Real-IP`. When they are allowed,
 * the spellings of a header in the map or of `X-Consumer-*` are still dropped.
 * The gateway's own headers (`X-Request-Id`, `X-Forwarded-*`, `X-Real-IP`, `Forwarded`,
 * `traceparent`, `tracestate` and `Content-Length`) are added after the removal of what
 * `Connection` names, so a client cannot strip them that way.
 * Refused (`invalid`): contradictory framing, several or malformed `Host` (or one that differs
 * from HTTP/2's `:authority`), several `Authorization`, more fields than node keeps, an upgrade
 * to anything but WebSocket (an `h2c` offer is ignored: request-flow.ts), and any
 * `_` name when `headersWithUnderscores` is `reject`.
 */
import { isValidHost } from '../router/host.js';

/** What happens to a header whose name has `_` (nginx `underscores_in_headers`, Envoy `headers_with_underscores_action`). */
export type UnderscoreAction = 'drop' | 'reject' | 'allow';

export type RequestHeaderScan = {
  forward: string[];
  host: string | undefined;
  requestId: string | undefined;
  forwardedFor: string | undefined;
  forwardedProto: string | undefined;
  forwardedHost: string | undefined;
  /** RFC 7239 `Forwarded`, all lines joined (believed only from a trusted proxy) */
  forwarded: string | undefined;
  forwardedPrefix: string | undefined;
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

const DROP = 1;
/** read by the scan; forwarded as the gateway decides */
const READ = 2;
/** forwarded only when the peer is a trusted proxy (it set them), dropped otherwise */
const TRUSTED_ONLY = 3;

const SPECIAL = new Map<string, number>([
  ['connection', READ],
  ['keep-alive', DROP],
  ['proxy-connection', DROP],
  ['proxy-authorization', DROP],
  ['proxy-authenticate', DROP],
  ['te', DROP],
  ['trailer', DROP],
  ['transfer-encoding', READ],
  ['upgrade', READ],
  ['expect', DROP],
  // Method overrides: the route (and its permissions) were chosen for the request's method; an
  // upstream honouring these (Express method-override, ASP.NET, ...) would run another one.
  ['x-http-method-override', DROP],
  ['x-http-method', DROP],
  ['x-method-override', DROP],
  // Rewrite headers: IIS, Symfony, Laravel, Zend, Envoy, Traefik... take the path to run from
  // these instead of the request line, which is the one the gateway routed and authorised.
  ['x-original-url', DROP],
  ['x-rewrite-url', DROP],
  ['x-original-uri', DROP],
  ['x-override-url', DROP],
  ['x-forwarded-uri', DROP],
  ['x-envoy-original-path', DROP],
  // the client address, as the gateway sees it, is set by appendForwarded
  ['x-real-ip', DROP],
  ['host', READ],
  // HTTP/2's pseudo-headers (node's HTTP/2 parser validates them): the request line is the
  // request's own, `:authority` stands for Host (RFC 9113 §8.3.1)
  [':authority', READ],
  [':method', DROP],
  [':path', DROP],
  [':scheme', DROP],
  [':protocol', DROP],
  // an `Upgrade: h2c` offer's settings: the offer is answered as HTTP/1.1
  ['http2-settings', DROP],
  ['x-request-id', READ],
  ['x-forwarded-for', READ],
  ['x-forwarded-proto', READ],
  ['x-forwarded-host', READ],
  ['x-forwarded-prefix', READ],
  ['forwarded', READ],
  ['authorization', READ],
  ['content-length', READ],
  ['traceparent', READ],
  ['tracestate', READ],
  // What a CDN or load balancer in front says about the client, the scheme, the port and when
  // the request started: believed from a trusted proxy only, like X-Forwarded-*.
  ['true-client-ip', TRUSTED_ONLY],
  ['x-client-ip', TRUSTED_ONLY],
  ['client-ip', TRUSTED_ONLY],
  ['x-cluster-client-ip', TRUSTED_ONLY],
  ['cf-connecting-ip', TRUSTED_ONLY],
  ['fastly-client-ip', TRUSTED_ONLY],
  ['x-forwarded-port', TRUSTED_ONLY],
  ['x-forwarded-ssl', TRUSTED_ONLY],
  ['x-forwarded-scheme', TRUSTED_ONLY],
  ['x-url-scheme', TRUSTED_ONLY],
  ['front-end-https', TRUSTED_ONLY],
  ['x-forwarded-server', TRUSTED_ONLY],
  ['x-request-start', TRUSTED_ONLY],
]);

const join = (a: string | undefined, b: string) => (a === undefined ? b : `${a}, ${b}`);

export function scanRequestHeaders(
  raw: readonly string[],
  /** the peer is in `trustedProxies`: the headers it may set are kept */
  peerTrusted = false,
  underscores: UnderscoreAction = 'drop',
): RequestHeaderScan {
  const forward: string[] = [];
  const scan: RequestHeaderScan = {
    forward,
    host: undefined,
    requestId: undefined,
    forwardedFor: undefined,
    forwardedProto: undefined,
    forwardedHost: undefined,
    forwarded: undefined,
    forwardedPrefix: undefined,
    traceparent: undefined,
    tracestate: undefined,
    bodyLength: 0,
    invalid: undefined,
  };
  let connection: string | undefined;
  let contentLength: string | undefined;
  let transferEncoding: string | undefined;
  let upgrade: string | undefined;
  let authorization = false;
  let authority = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    const lower = name.toLowerCase();
    const special = SPECIAL.get(lower);
    if (special === undefined) {
      if (lower.startsWith('x-consumer-')) continue;
      if (lower.includes('_')) {
        if (underscores === 'reject') scan.invalid = 'header name with an underscore';
        if (underscores !== 'allow' || isReservedAlias(lower)) continue;
      }
      forward.push(lower, value);
      continue;
    }
    if (special === DROP) continue;
    if (special === TRUSTED_ONLY) {
      if (peerTrusted) forward.push(lower, value);
      continue;
    }
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
        // HTTP/2 may send Host beside :authority (it comes first): they must agree
        if (scan.host !== undefined)
          scan.invalid = !authority
            ? 'multiple Host headers'
            : scan.host !== value
              ? 'Host differs from :authority'
              : scan.invalid;
        else if (!isValidHost(value)) scan.invalid = 'invalid Host header';
        scan.host = value;
        break;
      case ':authority':
        authority = true;
        if (!isValidHost(value)) scan.invalid = 'invalid :authority';
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
      case 'x-forwarded-prefix':
        scan.forwardedPrefix = value;
        break;
      case 'forwarded':
        scan.forwarded = join(scan.forwarded, value);
        break;
      case 'authorization':
        // A singleton field (RFC 9110 §11.6.2): node and the authenticators read the first, an
        // upstream may read the last or all of them. One credential, or none.
        if (authorization) scan.invalid = 'multiple Authorization headers';
        authorization = true;
        forward.push(lower, value);
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
    // other protocol would let the client send the upstream requests for paths no route
    // allows. An h2c offer is not relayed either: it is ignored, the request answered as
    // HTTP/1.1 (RFC 9113 deprecates the offer; `curl --http2 http://` makes it).
    if (upgrade !== undefined && tokens.includes('upgrade')) {
      const protocol = upgrade.trim().toLowerCase();
      if (protocol !== 'websocket' && protocol !== 'h2c')
        scan.invalid = 'unsupported Upgrade (only websocket is relayed)';
    }
    dropNamedByConnection(forward, tokens);
  }
  // After the Connection-named removal: `Connection: content-length` must not change the framing.
  if (scan.bodyLength > 0) forward.push('content-length', String(scan.bodyLength));
  return scan;
}

/** `x_forwarded_for`, `x-consumer_id`, `x_real_ip`: a spelling of a header the gateway controls. */
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
