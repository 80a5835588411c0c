/**
 * CORS (policy.ts): the route's `cors`, or the top-level one (`cors: false` on a route turns it
 * off). It runs before authentication, because a browser's preflight (`OPTIONS` with
 * `Access-Control-Request-Method`) carries no credentials: the gateway answers it itself with a
 * 204 that never reaches the upstream. On other requests from an allowed origin, the CORS
 * headers go on the upstream's answer (whose own CORS headers are dropped) and on the gateway's
 * own answers (a 401 or a 429 the page must be able to read: `answerHeaders`); `Vary: Origin`
 * goes on every answer whose headers depend on the Origin.
 */
import type { CorsConfig } from '../../router/policy-config.js';
import { defineStage, Reply, ScratchKey } from '../stage.js';
import { CorsPolicy, dropCorsHeaders, varyOrigin } from './policy.js';

/** the CORS headers of this request's answer (its origin is allowed) */
const ALLOWED = new ScratchKey<readonly string[]>('cors.allowed');

export const cors = defineStage<CorsConfig>({
  name: 'cors',
  order: 40,
  section: (route, config) => (route.cors === false ? null : (route.cors ?? config.cors ?? null)),
  create(config) {
    const policy = new CorsPolicy(config);
    return {
      onRequest(ctx) {
        const headers = ctx.req.headers;
        const origin = headers.origin;
        if (origin === undefined) return undefined;
        if (ctx.req.method === 'OPTIONS' && headers['access-control-request-method'] !== undefined) {
          const h = headers['access-control-request-headers'];
          return new Reply(204, policy.preflight(origin, h));
        }
        const allowed = policy.actual(origin);
        if (allowed === null) return undefined;
        ctx.set(ALLOWED, allowed);
        ctx.answerHeaders = policy.varies ? [...allowed, 'vary', 'Origin'] : allowed;
        return undefined;
      },
      onResponseHeaders(ctx, headers) {
        dropCorsHeaders(headers);
        const allowed = ctx.get(ALLOWED);
        if (allowed !== undefined)
          for (let i = 0; i < allowed.length; i++) headers.push(allowed[i] as string);
        if (policy.varies) varyOrigin(headers);
      },
    };
  },
});
