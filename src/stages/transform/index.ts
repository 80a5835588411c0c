/**
 * Request and response transformation (`transform`): the upstream request's headers, path and
 * query, the client's Host sent upstream (`preserveHost`), and the upstream response's headers.
 * Values may use placeholders (template.ts). It runs last before the proxy, after
 * authentication and rate limiting, so `${consumer.*}` and `${jwt.claim.*}` are known, and it
 * works on what the gateway already cleaned: the headers the gateway owns (X-Forwarded-*,
 * X-Consumer-*, X-Request-Id, traceparent...) are refused by the config check and cannot be
 * touched here.
 */
import {
  gatewayOwnedRequestHeader,
  gatewayOwnedResponseHeader,
  type TransformConfig,
} from '../../router/policy-config.js';
import { defineStage, type StageInstance } from '../stage.js';
import { compileHeaderOps, compilePathRewrite, compileQueryOps, type HeaderOpsConfig } from './rewrite.js';

export const transform = defineStage<TransformConfig>({
  name: 'transform',
  order: 700,
  section: (route) => route.transform ?? null,
  create(config, _deps, route) {
    const request = config.request;
    ownedCheck(route.name, request?.headers, gatewayOwnedRequestHeader);
    ownedCheck(route.name, config.response?.headers, gatewayOwnedResponseHeader);
    const requestHeaders = request?.headers === undefined ? null : compileHeaderOps(request.headers);
    const path = request?.path === undefined ? null : compilePathRewrite(request.path);
    const query = request?.query === undefined ? null : compileQueryOps(request.query);
    const preserveHost = config.preserveHost;
    const responseHeaders =
      config.response?.headers === undefined ? null : compileHeaderOps(config.response.headers);
    const instance: StageInstance = {};
    if (requestHeaders !== null || path !== null || query !== null || preserveHost) {
      instance.onRequest = (ctx) => {
        if (requestHeaders !== null) requestHeaders(ctx, ctx.upstreamHeaders);
        if (preserveHost) {
          const host = ctx.req.headers.host;
          if (host !== undefined) ctx.upstreamHeaders.push('host', host);
        }
        if (path !== null || query !== null) {
          const p = path === null ? ctx.path : path(ctx.path);
          const q = query === null ? ctx.query : query(ctx, ctx.query);
          ctx.upstreamTarget = q === '' ? p : p + '?' + q;
        }
        return undefined;
      };
    }
    if (responseHeaders !== null)
      instance.onResponseHeaders = (ctx, headers) => responseHeaders(ctx, headers);
    return instance.onRequest === undefined && instance.onResponseHeaders === undefined ? null : instance;
  },
});

/** The config check refuses these; a wiring that lets one through must not start. */
function ownedCheck(route: string, ops: HeaderOpsConfig | undefined, owned: (name: string) => boolean): void {
  if (ops === undefined) return;
  const names = [
    ...Object.keys(ops.add ?? {}),
    ...Object.keys(ops.set ?? {}),
    ...(ops.remove ?? []),
    ...Object.entries(ops.rename ?? {}).flat(),
  ];
  const bad = names.find(owned);
  if (bad !== undefined) throw new Error(`route "${route}": a transform cannot change "${bad}"`);
}
