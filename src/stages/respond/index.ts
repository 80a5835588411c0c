/**
 * A route that answers itself: `respond` (a fixed response: a maintenance page, a stub) or
 * `redirect` (a moved API: `to` may use `${request.path}`, the request's path, and
 * `${request.query}`, its query with the "?" or nothing). Such a route has no service. It runs after the IP lists and CORS
 * (whose headers it carries) and before authentication: a maintenance page or a moved API
 * answers whoever asks.
 */
import type { RedirectConfig, RespondConfig } from '../../router/policy-config.js';
import { defineStage, Reply, type RequestContext } from '../stage.js';

type Section = { readonly respond: RespondConfig } | { readonly redirect: RedirectConfig };

export const respond = defineStage<Section>({
  name: 'respond',
  order: 60,
  section(route) {
    if (route.respond !== undefined) return { respond: route.respond };
    if (route.redirect !== undefined) return { redirect: route.redirect };
    return null;
  },
  create(section) {
    if ('respond' in section) {
      const reply = fixedReply(section.respond);
      return { onRequest: () => reply };
    }
    const location = compileLocation(section.redirect.to);
    const status = section.redirect.status;
    return {
      onRequest: (ctx) => new Reply(status, ['location', location(ctx), 'cache-control', 'no-store']),
    };
  },
});

/** The reply of a `respond` route, built once. */
export function fixedReply(config: RespondConfig): Reply {
  const headers = ['content-type', config.contentType];
  for (const [name, value] of Object.entries(config.headers ?? {})) headers.push(name, value);
  const body = Buffer.from(config.body, 'utf8');
  return new Reply(config.status, Object.freeze(headers), body);
}

/**
 * `to` compiled into a function of the request: its literal parts, `${request.path}` and
 * `${request.query}`. The
 * path and query are the request target as parsed and normalised (no control characters or
 * spaces reach here: node's parser refuses them), so the Location cannot carry a second header.
 */
export function compileLocation(to: string): (ctx: Pick<RequestContext, 'path' | 'query'>) => string {
  const parts = to.split(/(\$\{request\.(?:path|query)\})/);
  if (parts.length === 1) return () => to;
  return (ctx) => {
    let out = '';
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i] as string;
      if (p === '${request.path}') out += ctx.path;
      else if (p === '${request.query}') out += ctx.query === '' ? '' : '?' + ctx.query;
      else out += p;
    }
    return out;
  };
}
