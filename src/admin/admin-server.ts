/**
 * The admin port: probes for Kubernetes, metrics, and the management API. Built for clarity, not
 * speed. Every endpoint is a declaration of the route table (route-table.ts, endpoints/); this
 * module routes a request to one, checks the caller's token and role, validates what it carries
 * against the endpoint's schemas, runs it, and writes the answer, and for a mutating endpoint
 * writes the audit entry. Every failure (a throw, a rejected promise) ends at one boundary: a
 * `500 internal_error`, counted and logged; nothing a client sends can end the process.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { silentLogger, type Logger } from '../observability/logger.js';
import { problem, problems } from '../problems/registry.js';
import { writeProblem } from '../problems/write.js';
import { parseRequestTarget } from '../router/request-target.js';
import { AuditLog } from './audit.js';
import { consoleServer, isConsolePath, type ConsoleServer } from './console/serve.js';
import { adminContext, type AdminContext } from './context.js';
import { gatewayRoutes } from './endpoints/gateway.js';
import { keyRoutes } from './endpoints/keys.js';
import { revocationRoutes } from './endpoints/revocation.js';
import { routeRoutes } from './endpoints/routes.js';
import { serviceRoutes } from './endpoints/services.js';
import { sessionRoutes } from './endpoints/session.js';
import { usageRoutes } from './endpoints/usage.js';
import { checked, readJsonBody } from './http.js';
import { createKeysAdmin } from './keys.js';
import { openApiDocument } from './openapi.js';
import { AdminProblem, defineRoute, ok, type AdminAnswer, type AdminRoute } from './route-table.js';
import type { AdminState } from './state.js';
import { identify, tokensConfigured, type AdminCaller } from './tokens.js';

export type {
  AdminReloadResult,
  AdminState,
  AdminControl,
  AdminRuntimeView,
  AdminProcessInfo,
} from './state.js';

const route = defineRoute<AdminContext>();

/** Every endpoint of the admin API, in the order the reference lists them. */
export const ADMIN_ROUTES: readonly AdminRoute<AdminContext>[] = [
  ...gatewayRoutes,
  route({
    method: 'GET',
    path: '/openapi.json',
    operationId: 'getOpenApi',
    tag: 'gateway',
    summary: 'This API as an OpenAPI 3.1 document',
    mutating: false,
    responses: { 200: { description: 'OpenAPI 3.1' } },
    handler: ({ req }) => ok(openApiDocument(ADMIN_ROUTES, serverUrl(req))),
  }),
  ...routeRoutes,
  ...serviceRoutes,
  ...keyRoutes,
  ...usageRoutes,
  ...revocationRoutes,
  ...sessionRoutes,
];

const serverUrl = (req: IncomingMessage): string | undefined => {
  const host = req.headers.host;
  return host !== undefined && /^[A-Za-z0-9.:[\]-]{1,300}$/.test(host) ? `http://${host}` : undefined;
};

const UNAUTHORIZED = problem('unauthorized_admin', 'the admin API requires a valid bearer token', [
  'www-authenticate',
  'Bearer realm="gatehouse-admin"',
]);

type Compiled = { route: AdminRoute<AdminContext>; parts: Array<string | { param: string }> };

function compile(routes: readonly AdminRoute<AdminContext>[]): Compiled[] {
  return routes.map((r) => ({
    route: r,
    parts: r.path
      .slice(1)
      .split('/')
      .map((p) => (p.startsWith('{') && p.endsWith('}') ? { param: p.slice(1, -1) } : p)),
  }));
}

type Found =
  | { kind: 'route'; route: AdminRoute<AdminContext>; params: Record<string, string> }
  | { kind: 'method'; methods: string[] }
  | { kind: 'none' };

/** The endpoint of `method path`; literal segments beat parameters (`/keys/{id}` vs `/routes/match`). */
function find(table: Compiled[], method: string, path: string): Found {
  const segments = path.slice(1).split('/');
  let best: { c: Compiled; params: Record<string, string>; score: number } | null = null;
  const methods = new Set<string>();
  for (const c of table) {
    if (c.parts.length !== segments.length) continue;
    const params: Record<string, string> = {};
    let score = 0;
    let matched = true;
    for (let i = 0; i < segments.length; i++) {
      const part = c.parts[i] as string | { param: string };
      const seg = segments[i] as string;
      if (typeof part === 'string') {
        if (part !== seg) {
          matched = false;
          break;
        }
        score += 1 << (segments.length - i);
      } else {
        if (seg === '') {
          matched = false;
          break;
        }
        params[part.param] = seg;
      }
    }
    if (!matched) continue;
    methods.add(c.route.method);
    if (c.route.method === method && (best === null || score > best.score)) best = { c, params, score };
  }
  if (best !== null) return { kind: 'route', route: best.c.route, params: best.params };
  return methods.size > 0 ? { kind: 'method', methods: [...methods] } : { kind: 'none' };
}

export function createAdminServer(
  state: AdminState,
  routes: readonly AdminRoute<AdminContext>[] = ADMIN_ROUTES,
): Server {
  const logger = (): Logger => state.logger?.() ?? silentLogger();
  const keys =
    state.keys ??
    createKeysAdmin(() => {
      if (state.runtime === undefined) throw new AdminProblem(problem('not_found', 'no key store here'));
      return state.runtime().config;
    });
  const audit = new AuditLog(logger, () => state.auditEntries?.() ?? 1000);
  const ctx = adminContext(state, keys, audit, logger);
  const table = compile(routes);
  const ui = consoleServer();
  const server = createServer((req, res) => {
    const requestId = randomUUID();
    res.setHeader('x-request-id', requestId);
    const failed = (err: unknown): void => {
      try {
        writeProblem(res, problems.internal(), requestId, false);
      } catch {
        res.destroy();
      }
      try {
        state.handlerFailed(err, requestId);
      } catch {
        // reporting failed too (an error the logger cannot serialise): throwing would end the process
      }
    };
    // a write after the end emits 'error', which unheard would end the process
    res.on('error', failed);
    handle(table, ctx, req, res, requestId, ui).catch(failed);
  });
  return server;
}

async function handle(
  table: Compiled[],
  ctx: AdminContext,
  req: IncomingMessage,
  res: ServerResponse,
  requestId: string,
  ui: ConsoleServer,
): Promise<void> {
  // the same reading of the target as on the proxy port (`new URL` would throw on `//a:99999/`)
  const target = parseRequestTarget(req.url ?? '/');
  if (!target.ok) return writeProblem(res, problems.badRequest(target.reason), requestId, false);
  // the console's static files: no token (the page asks for one), never with none configured
  if (isConsolePath(target.path))
    return ui.serve(
      req,
      res,
      target.path,
      ctx.state.ui?.() === true && tokensConfigured(ctx.state.tokens()),
      requestId,
    );
  const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
  const found = find(table, method, target.path);
  const open = found.kind === 'route' && found.route.open === true;
  const caller = open ? null : identify(ctx.state.tokens(), req.headers.authorization);
  if (!open && caller === null) {
    if (found.kind === 'route' && found.route.mutating)
      auditCall(ctx, found.route, req, target.path, null, null, UNAUTHORIZED.status, requestId);
    return writeProblem(res, UNAUTHORIZED, requestId, false);
  }
  if (found.kind === 'none')
    return writeProblem(res, problem('not_found', `no admin endpoint ${target.path}`), requestId, false);
  if (found.kind === 'method')
    return writeProblem(
      res,
      problem('method_not_allowed', `${req.method ?? ''} is not allowed here`, [
        'allow',
        found.methods.join(', '),
      ]),
      requestId,
      false,
    );
  const r = found.route;
  const who = caller ?? { id: 'anonymous', role: 'read' as const };
  let status = 500;
  let targetName: string | null = null;
  try {
    if (r.mutating && who.role !== 'admin')
      throw new AdminProblem(
        problem('read_only_token', `token "${who.id}" is read-only: ${r.operationId} changes state`),
      );
    const input = await inputOf(r, req, found.params, target.query, who, requestId);
    targetName = r.target?.(input) ?? null;
    const answer = await r.handler(input, ctx);
    send(res, answer);
    status = answer.status;
    targetName = answer.auditTarget ?? targetName;
  } catch (err) {
    if (!(err instanceof AdminProblem)) throw err;
    status = err.problem.status;
    writeProblem(res, err.problem, requestId, false);
  } finally {
    if (r.mutating) auditCall(ctx, r, req, target.path, who.id, targetName, status, requestId);
  }
}

async function inputOf(
  r: AdminRoute<AdminContext>,
  req: IncomingMessage,
  rawParams: Record<string, string>,
  query: string,
  caller: AdminCaller,
  requestId: string,
) {
  const params: Record<string, string> = {};
  for (const [name, value] of Object.entries(rawParams)) {
    try {
      params[name] = decodeURIComponent(value);
    } catch {
      throw notFound(r);
    }
  }
  if (r.params !== undefined) {
    try {
      checked(r.params, params, 'path');
    } catch {
      // a parameter no resource can have: nothing there (`/keys/'%20OR%201=1`, `..`)
      throw notFound(r);
    }
  }
  const q: Record<string, string> = {};
  // probes and scrapes are lenient: a load balancer's or Prometheus's own parameters are ignored
  const known =
    r.open === true ? Object.keys((r.query as { properties?: object } | undefined)?.properties ?? {}) : null;
  for (const [k, v] of new URLSearchParams(query)) {
    if (known !== null && !known.includes(k)) continue;
    if (k in q) throw new AdminProblem(problem('bad_request', `query: ${k} is given twice`));
    q[k] = v;
  }
  const checkedQuery =
    r.query !== undefined
      ? checked(r.query, q, 'query', true)
      : Object.keys(q).length > 0
        ? (() => {
            throw new AdminProblem(
              problem('bad_request', `query: ${Object.keys(q)[0] ?? ''}: unknown parameter`),
            );
          })()
        : {};
  let body: unknown = undefined;
  if (r.body !== undefined) {
    const raw = await readJsonBody(req, r.bodyOptional === true);
    body = checked(r.body, raw ?? {}, 'body');
  } else if (r.method !== 'GET') {
    // no body is expected: one that is sent is drained, not read
    req.resume();
  }
  return { params, query: checkedQuery, body, caller, requestId, req };
}

const notFound = (r: AdminRoute<AdminContext>): AdminProblem =>
  new AdminProblem(
    problem('not_found', r.path.startsWith('/keys/') ? 'no such key' : `nothing at ${r.path}`),
  );

function auditCall(
  ctx: AdminContext,
  r: AdminRoute<AdminContext>,
  req: IncomingMessage,
  path: string,
  tokenId: string | null,
  target: string | null,
  status: number,
  requestId: string,
): void {
  ctx.audit.record({
    time: new Date().toISOString(),
    tokenId,
    method: req.method ?? '',
    path,
    operationId: r.operationId,
    target,
    status,
    outcome: status < 400 ? 'ok' : status < 500 ? 'refused' : 'failed',
    requestId,
  });
}

function send(res: ServerResponse, answer: AdminAnswer): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  if (answer.contentType !== undefined && typeof answer.body !== 'string')
    throw new TypeError(`a ${answer.contentType} answer needs a string body`);
  const text = answer.contentType === undefined ? JSON.stringify(answer.body) : (answer.body as string);
  res.writeHead(answer.status, {
    'content-type': answer.contentType ?? 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...answer.headers,
  });
  res.end(text);
}
