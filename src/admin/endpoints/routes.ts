/** `/routes`: the compiled route table in match order, and which route a request would hit. */
import { Type } from '@sinclair/typebox';
import type { RouteConfig } from '../../config/schema.js';
import { normaliseHost } from '../../router/host.js';
import { parsePattern, type Segment } from '../../router/pattern.js';
import { parseRequestTarget } from '../../router/request-target.js';
import type { AdminContext } from '../context.js';
import { defineRoute, ok } from '../route-table.js';

const route = defineRoute<AdminContext>();

const RouteView = Type.Object(
  {
    name: Type.String(),
    host: Type.Union([Type.String(), Type.Null()]),
    path: Type.String(),
    methods: Type.Union([Type.Array(Type.String()), Type.Null()], { description: 'null: every method' }),
    service: Type.String(),
    stages: Type.Array(Type.String(), { description: 'the stages the route runs, in order' }),
    stripPrefix: Type.Union([Type.String(), Type.Null()]),
  },
  { additionalProperties: false },
);

const rank = (s: Segment | undefined): number =>
  s === undefined ? 0 : s.kind === 'literal' ? 1 : s.kind === 'star' ? 2 : 3;

/** The router's precedence (router.ts) as an order: host, then path segments, then methods. */
function hostRank(host: string | undefined): [number, number] {
  if (host === undefined) return [2, 0];
  return host.startsWith('*.') ? [1, -host.length] : [0, 0];
}

function compare(a: RouteConfig, b: RouteConfig): number {
  const [ha, la] = hostRank(a.match.host);
  const [hb, lb] = hostRank(b.match.host);
  if (ha !== hb) return ha - hb;
  if (la !== lb) return la - lb;
  const sa = segmentsOf(a);
  const sb = segmentsOf(b);
  for (let i = 0; i < Math.max(sa.length, sb.length); i++) {
    const x = sa[i];
    const y = sb[i];
    if (x?.kind === 'literal' && y?.kind === 'literal' && x.value !== y.value)
      return x.value < y.value ? -1 : 1;
    // a pattern that ends here beats one that goes on with `**`
    const d = (x === undefined ? 0.5 : rank(x)) - (y === undefined ? 0.5 : rank(y));
    if (d !== 0) return d;
  }
  return (a.match.methods === undefined ? 1 : 0) - (b.match.methods === undefined ? 1 : 0);
}

function segmentsOf(r: RouteConfig): Segment[] {
  const p = parsePattern(r.match.path);
  return p.ok ? p.segments : [];
}

/** Whether `segments` match the normalised `path` (the router's rules, one pattern). */
/** The routes in match order: the first that takes a request is the one the router picks. */
export function inMatchOrder(routes: readonly RouteConfig[]): RouteConfig[] {
  return [...routes].sort(compare);
}

/** Whether `route` takes the request, alone (no other route considered). */
export function routeTakes(route: RouteConfig, host: string, method: string, path: string): boolean {
  return (
    pathMatches(segmentsOf(route), path) &&
    hostMatches(route.match.host, host) &&
    (route.match.methods === undefined || (route.match.methods as readonly string[]).includes(method))
  );
}

function pathMatches(segments: Segment[], path: string): boolean {
  const parts = path === '/' ? [''] : path.slice(1).split('/');
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i] as Segment;
    if (s.kind === 'globstar') return true;
    const part = parts[i];
    if (part === undefined) return false;
    if (s.kind === 'star' ? part === '' : part !== s.value) return false;
  }
  return parts.length === segments.length;
}

function hostMatches(rule: string | undefined, host: string): boolean {
  if (rule === undefined) return true;
  const r = rule.toLowerCase();
  return r.startsWith('*.') ? host.length > r.length - 1 && host.endsWith(r.slice(1)) : host === r;
}

export const routeRoutes = [
  route({
    method: 'GET',
    path: '/routes',
    operationId: 'listRoutes',
    tag: 'routes',
    summary: 'The compiled routes in match order (most specific first), with their stages and service',
    mutating: false,
    responses: {
      200: {
        description: 'routes',
        schema: Type.Object({ routes: Type.Array(RouteView) }, { additionalProperties: false }),
      },
    },
    handler: (_input, ctx) => {
      const rt = ctx.runtime();
      const names = new Map(rt.routes.map((r) => [r.name, r.stageNames ?? []]));
      const routes = inMatchOrder(rt.config.routes).map((r) => ({
        name: r.name,
        host: r.match.host ?? null,
        path: r.match.path,
        methods: r.match.methods ? [...r.match.methods] : null,
        service: r.service,
        stages: [...(names.get(r.name) ?? [])],
        stripPrefix: r.stripPrefix ?? null,
      }));
      return ok({ routes });
    },
  }),
  route({
    method: 'GET',
    path: '/routes/match',
    operationId: 'matchRoute',
    tag: 'routes',
    summary: 'Which route a request would hit, and why (or why none does)',
    mutating: false,
    query: Type.Object(
      {
        method: Type.String({ pattern: '^[A-Za-z]{1,20}$', description: 'the request method' }),
        host: Type.Optional(Type.String({ maxLength: 300, description: 'the Host header (port ignored)' })),
        path: Type.String({
          minLength: 1,
          maxLength: 8192,
          description: 'the request target (path and query)',
        }),
      },
      { additionalProperties: false },
    ),
    responses: {
      200: {
        description: '`route` is null when none matches; `reason` says why',
        schema: Type.Object(
          {
            matched: Type.Boolean(),
            route: Type.Union([RouteView, Type.Null()]),
            normalizedPath: Type.Union([Type.String(), Type.Null()]),
            host: Type.String(),
            reason: Type.String(),
            candidates: Type.Array(
              Type.Object(
                { name: Type.String(), refusedBecause: Type.String() },
                { additionalProperties: false },
              ),
              { description: 'routes that matched in part, and what they did not match' },
            ),
          },
          { additionalProperties: false },
        ),
      },
    },
    handler: ({ query }, ctx) => {
      const rt = ctx.runtime();
      const method = query.method.toUpperCase();
      const host = query.host === undefined ? '' : normaliseHost(query.host);
      const target = parseRequestTarget(query.path);
      if (!target.ok)
        return ok({
          matched: false,
          route: null,
          normalizedPath: null,
          host,
          reason: `the path is refused: ${target.reason}`,
          candidates: [],
        });
      const path = target.path;
      const hit = rt.router.match(host, method, path);
      const candidates: Array<{ name: string; refusedBecause: string }> = [];
      for (const r of rt.config.routes) {
        if (r.name === hit?.name) continue;
        const pm = pathMatches(segmentsOf(r), path);
        const hm = hostMatches(r.match.host, host);
        const mm = r.match.methods === undefined || (r.match.methods as readonly string[]).includes(method);
        if (!pm) continue;
        if (!hm) candidates.push({ name: r.name, refusedBecause: `host: requires ${r.match.host ?? ''}` });
        else if (!mm)
          candidates.push({
            name: r.name,
            refusedBecause: `method: takes ${(r.match.methods ?? []).join(', ')}`,
          });
        else candidates.push({ name: r.name, refusedBecause: 'less specific than the route that matched' });
      }
      if (hit === undefined) {
        return ok({
          matched: false,
          route: null,
          normalizedPath: path,
          host,
          reason:
            candidates.length === 0
              ? 'no route pattern matches the path'
              : 'routes match the path but not the host or method (see candidates)',
          candidates,
        });
      }
      const r = hit.config;
      const why = [
        `path ${path} matches ${r.match.path}`,
        r.match.host === undefined ? 'any host' : `host ${host} matches ${r.match.host}`,
        r.match.methods === undefined ? 'any method' : `method ${method} is listed`,
      ];
      return ok({
        matched: true,
        route: {
          name: r.name,
          host: r.match.host ?? null,
          path: r.match.path,
          methods: r.match.methods ? [...r.match.methods] : null,
          service: r.service,
          stages: [...(hit.stageNames ?? [])],
          stripPrefix: r.stripPrefix ?? null,
        },
        normalizedPath: path,
        host,
        reason: why.join('; '),
        candidates,
      });
    },
  }),
];
