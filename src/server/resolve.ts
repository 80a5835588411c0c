/**
 * Everything before the stages, shared by plain requests and upgrades: the header scan, the
 * request id, the request target normalised once, the route, the client address and the
 * forwarding headers. Either a context, or the problem to answer with.
 */
import type { IncomingMessage } from 'node:http';
import { RequestContext } from '../pipeline/context.js';
import { problems, type Problem } from '../pipeline/problems.js';
import { normaliseHost } from '../router/host.js';
import { parseRequestTarget } from '../router/request-target.js';
import { appendForwarded, clientIpFor, plainAddress } from '../stages/real-ip/index.js';
import { requestIdFor } from '../stages/request-id/index.js';
import { scanRequestHeaders } from '../upstream/request-headers.js';
import type { GatewayResponse } from './response.js';
import type { Runtime } from './runtime.js';

export type Resolved =
  | { readonly ok: true; readonly ctx: RequestContext }
  | {
      readonly ok: false;
      readonly problem: Problem;
      readonly requestId: string;
      readonly bodyLength: number;
    };

/**
 * `res` learns the request id, trace and context (for metrics and the access log); for upgrades
 * it only stands in for the response, whose answer goes to the raw socket.
 */
export function resolveRequest(rt: Runtime, req: IncomingMessage, res: GatewayResponse): Resolved {
  const peer = plainAddress(req.socket.remoteAddress);
  const peerTrusted = rt.trustedProxies.has(peer);
  const scan = scanRequestHeaders(req.rawHeaders, peerTrusted, rt.config.limits.headersWithUnderscores);
  const requestId = requestIdFor(scan.requestId);
  const trace = rt.tracing.begin(scan.traceparent, scan.tracestate);
  res.requestId = requestId;
  res.trace = trace;
  const fail = (problem: Problem): Resolved => ({
    ok: false,
    problem,
    requestId,
    bodyLength: scan.bodyLength,
  });
  // llhttp also parses `HTTP/0.9` and `HTTP/2.0` request lines; neither is HTTP/1 framing (the
  // Host requirement, keep-alive rules) and no upstream should get them: RFC 9110 §15.6.6
  if (req.httpVersionMajor !== 1)
    return fail(problems.httpVersionNotSupported(req.httpVersionMajor, req.httpVersionMinor));
  if (scan.invalid !== undefined) return fail(problems.badRequest(scan.invalid));
  if (scan.host === undefined && req.httpVersionMinor === 1)
    return fail(problems.badRequest('missing Host header'));
  const url = req.url ?? '/';
  const limit = rt.config.limits.maxUrlLength;
  if (url.length > limit) return fail(problems.urlTooLong(limit));
  const target = parseRequestTarget(url);
  if (!target.ok) return fail(problems.badRequest(target.reason));
  const route = rt.router.match(normaliseHost(scan.host), req.method as string, target.path);
  if (route === undefined) return fail(problems.noRoute());

  const clientIp = peerTrusted ? clientIpFor(peer, scan.forwardedFor, rt.trustedProxies) : peer;
  const stripped = route.stripLength > 0 ? target.path.slice(0, route.stripLength) : '';
  const headers = scan.forward;
  appendForwarded(headers, requestId, peer, peerTrusted, clientIp, scan, stripped);
  headers.push('traceparent', trace.traceparent);
  if (trace.tracestate !== null) headers.push('tracestate', trace.tracestate);
  const ctx = new RequestContext(
    req,
    res,
    requestId,
    route,
    target.path,
    target.query,
    clientIp,
    headers,
    scan.bodyLength,
    res.startTime,
  );
  ctx.trace = trace;
  res.ctx = ctx;
  return { ok: true, ctx };
}
