/**
 * The admin port: probes for Kubernetes, and (as later capabilities land) metrics and the
 * management API. Built for clarity, not speed. Every request is handled by one async function
 * whose failures (a throw, a rejected promise) end at one boundary: a `500 internal_error`, counted
 * and logged; nothing a client sends can end the process.
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { problem, problems, type Problem } from '../problems/registry.js';
import { parseRequestTarget } from '../router/request-target.js';
import { writeProblem } from '../problems/write.js';
import { formatProblem, type ConfigProblem } from '../config/problems.js';
import type { KeysAdmin } from './keys.js';
import { openApiDocument } from './openapi.js';
import type { TokenRevocationAdmin } from './token-revocation.js';

/** What a reload reports (the gateway's reload result is one). */
export type AdminReloadResult =
  | { readonly ok: true; readonly restartNeeded: readonly string[] }
  | { readonly ok: false; readonly reason: 'invalid_config'; readonly problems: readonly ConfigProblem[] }
  | { readonly ok: false; readonly reason: 'reload_failed'; readonly detail: string };

/** What the admin port serves, handed over by the gateway (the admin port knows no server). */
export type AdminState = {
  /** the admin bearer token; '' = none required (only allowed on loopback) */
  token(): string;
  draining(): boolean;
  /** named readiness checks: true = ok, false = not ready, 'degraded' = ready, partly working */
  checks(): Record<string, boolean | 'degraded'>;
  /** the Prometheus text exposition */
  metrics(): Promise<{ contentType: string; body: string }>;
  /** re-reads the config file; null when the gateway was not started from a file */
  reload: (() => Promise<AdminReloadResult>) | null;
  /** what `GET /services` shows: each service's targets, health and breaker */
  services(): unknown[];
  /** the `/keys` endpoints (src/admin/keys.ts) */
  keys?: KeysAdmin;
  /** `POST /tokens/revoke`, `POST /consumers/:id/revoke-tokens` (src/admin/token-revocation.ts) */
  tokens?: TokenRevocationAdmin;
  /** a handler threw or its promise rejected (the request got a 500): to count and log */
  handlerFailed(err: unknown, requestId: string): void;
};

const OPEN_PATHS = new Set(['/livez', '/healthz', '/readyz', '/metrics']);

const UNAUTHORIZED = problem('unauthorized_admin', 'the admin API requires a valid bearer token', [
  'www-authenticate',
  'Bearer realm="gatehouse-admin"',
]);

export function createAdminServer(state: AdminState): Server {
  return createServer((req, res) => {
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
    handle(state, req, res, requestId, failed).catch(failed);
  });
}

async function handle(
  state: AdminState,
  req: IncomingMessage,
  res: ServerResponse,
  requestId: string,
  failed: (err: unknown) => void,
): Promise<void> {
  // the same reading of the target as on the proxy port (`new URL` would throw on `//a:99999/`)
  const target = parseRequestTarget(req.url ?? '/');
  if (!target.ok) return writeProblem(res, problems.badRequest(target.reason), requestId, false);
  const path = target.path;
  if (!OPEN_PATHS.has(path) && !authorized(req, state.token())) {
    return writeProblem(res, UNAUTHORIZED, requestId, false);
  }
  // the replies come later, from the modules' promises: a throw there must end here too
  const reply = {
    json: (status: number, body: unknown) => guard(failed, () => sendJson(res, status, body)),
    problem: (p: Problem) => guard(failed, () => writeProblem(res, p, requestId, false)),
  };
  if (state.keys?.handle(req, res, path, reply) || state.tokens?.handle(req, res, path, reply)) return;
  if (path === '/reload' && req.method === 'POST') {
    if (state.reload === null) {
      return writeProblem(
        res,
        problem('reload_unavailable', 'the gateway was not started from a config file'),
        requestId,
        false,
      );
    }
    return state.reload().then(
      (result) => {
        if (result.ok) return sendJson(res, 200, { status: 'reloaded', restartNeeded: result.restartNeeded });
        if (result.reason === 'invalid_config')
          return writeProblem(
            res,
            {
              ...problem('invalid_config', 'the config file is invalid; the running config is kept'),
              errors: result.problems.map(formatProblem),
            },
            requestId,
            false,
          );
        // valid, but it could not be put to work (a key file gone since it was checked...)
        return writeProblem(
          res,
          problem('reload_failed', `${result.detail}; the running config is kept`),
          requestId,
          false,
        );
      },
      () => writeProblem(res, problem('internal_error', 'reload failed'), requestId, false),
    );
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return writeProblem(
      res,
      problem('method_not_allowed', `${req.method} is not allowed here`),
      requestId,
      false,
    );
  }
  switch (path) {
    case '/livez':
    case '/healthz':
      return sendJson(res, 200, { status: 'ok' });
    case '/readyz': {
      const checks = { ...state.checks(), accepting: !state.draining() };
      const ready = Object.values(checks).every((ok) => ok !== false);
      const body: Record<string, unknown> = {
        status: ready ? 'ready' : state.draining() ? 'draining' : 'not ready',
      };
      if (new URLSearchParams(target.query).has('verbose')) body.checks = checks;
      if (!ready) res.setHeader('retry-after', '1');
      return sendJson(res, ready ? 200 : 503, body);
    }
    case '/metrics':
      return state.metrics().then(
        ({ contentType, body }) => {
          res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
          res.end(body);
        },
        () => writeProblem(res, problem('internal_error', 'metrics collection failed'), requestId, false),
      );
    case '/services':
      return sendJson(res, 200, { services: state.services() });
    case '/openapi.json':
      return sendJson(res, 200, openApiDocument());
    default:
      return writeProblem(res, problem('not_found', `no admin endpoint ${path}`), requestId, false);
  }
}

function guard(failed: (err: unknown) => void, reply: () => void): void {
  try {
    reply();
  } catch (err) {
    failed(err);
  }
}

/**
 * The credentials of `Authorization: Bearer <token>`, or '' when there are none. The scheme is
 * case-insensitive (RFC 9110 §11.1: `bearer`, `BEARER`); one or more spaces follow it.
 */
function bearerCredentials(header: string | undefined): string {
  if (header === undefined || header.length < 7) return '';
  if (header.slice(0, 7).toLowerCase() !== 'bearer ') return '';
  return header.slice(7).trimStart();
}

function authorized(req: IncomingMessage, token: string): boolean {
  if (token === '') return true;
  const presented = bearerCredentials(req.headers.authorization);
  // compare digests: constant time, and no length leak
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(token).digest();
  return timingSafeEqual(a, b) && presented !== '';
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}
