/**
 * The admin port: probes for Kubernetes, and (as later capabilities land) metrics and the
 * management API. Built for clarity, not speed.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { problem, problemBody, type Problem } from '../pipeline/problems.js';
import type { ReloadResult } from '../server/gateway.js';
import { formatProblem } from '../config/problems.js';
import { requestIdFor } from '../stages/request-id/index.js';
import type { KeysAdmin } from './keys.js';
import { openApiDocument } from './openapi.js';

export type AdminState = {
  /** the admin bearer token; '' = none required (only allowed on loopback) */
  token(): string;
  draining(): boolean;
  /** named readiness checks: true = ok, false = not ready, 'degraded' = ready, partly working */
  checks(): Record<string, boolean | 'degraded'>;
  /** the Prometheus text exposition */
  metrics(): Promise<{ contentType: string; body: string }>;
  /** re-reads the config file; null when the gateway was not started from a file */
  reload: (() => Promise<ReloadResult>) | null;
  /** what `GET /services` shows: each service's targets, health and breaker */
  services(): unknown[];
  /** the `/keys` endpoints (src/admin/keys.ts) */
  keys?: KeysAdmin;
};

const OPEN_PATHS = new Set(['/livez', '/healthz', '/readyz', '/metrics']);

export function createAdminServer(state: AdminState): Server {
  return createServer((req, res) => {
    const requestId = requestIdFor(undefined);
    res.setHeader('x-request-id', requestId);
    const url = new URL(req.url ?? '/', 'http://admin.local');
    if (!OPEN_PATHS.has(url.pathname) && !authorized(req, state.token())) {
      return sendProblem(
        res,
        requestId,
        problem(401, 'unauthorized_admin', 'the admin API requires a valid bearer token', [
          'www-authenticate',
          'Bearer realm="gatehouse-admin"',
        ]),
      );
    }
    if (
      state.keys?.handle(req, res, url.pathname, {
        json: (status, body) => sendJson(res, status, body),
        problem: (p) => sendProblem(res, requestId, p),
      })
    ) {
      return;
    }
    if (url.pathname === '/reload' && req.method === 'POST') {
      if (state.reload === null) {
        return sendProblem(
          res,
          requestId,
          problem(409, 'reload_unavailable', 'the gateway was not started from a config file'),
        );
      }
      state.reload().then(
        (result) => {
          if (result.ok)
            return sendJson(res, 200, { status: 'reloaded', restartNeeded: result.restartNeeded });
          if (result.reason === 'invalid_config')
            return sendProblem(res, requestId, {
              ...problem(400, 'invalid_config', 'the config file is invalid; the running config is kept'),
              errors: result.problems.map(formatProblem),
            });
          // valid, but it could not be put to work (a key file gone since it was checked...)
          return sendProblem(
            res,
            requestId,
            problem(500, 'reload_failed', `${result.detail}; the running config is kept`),
          );
        },
        () => sendProblem(res, requestId, problem(500, 'internal_error', 'reload failed')),
      );
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return sendProblem(
        res,
        requestId,
        problem(405, 'method_not_allowed', `${req.method} is not allowed here`),
      );
    }
    switch (url.pathname) {
      case '/livez':
      case '/healthz':
        return sendJson(res, 200, { status: 'ok' });
      case '/readyz': {
        const checks = { ...state.checks(), accepting: !state.draining() };
        const ready = Object.values(checks).every((ok) => ok !== false);
        const body: Record<string, unknown> = {
          status: ready ? 'ready' : state.draining() ? 'draining' : 'not ready',
        };
        if (url.searchParams.has('verbose')) body.checks = checks;
        if (!ready) res.setHeader('retry-after', '1');
        return sendJson(res, ready ? 200 : 503, body);
      }
      case '/metrics':
        state.metrics().then(
          ({ contentType, body }) => {
            res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(body) });
            res.end(body);
          },
          () => sendProblem(res, requestId, problem(500, 'internal_error', 'metrics collection failed')),
        );
        return;
      case '/services':
        return sendJson(res, 200, { services: state.services() });
      case '/openapi.json':
        return sendJson(res, 200, openApiDocument());
      default:
        return sendProblem(res, requestId, problem(404, 'not_found', `no admin endpoint ${url.pathname}`));
    }
  });
}

function authorized(req: IncomingMessage, token: string): boolean {
  if (token === '') return true;
  const header = req.headers.authorization ?? '';
  const presented = header.startsWith('Bearer ') ? header.slice(7) : '';
  // compare digests: constant time, and no length leak
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(token).digest();
  return timingSafeEqual(a, b) && presented !== '';
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}

function sendProblem(res: ServerResponse, requestId: string, p: Problem & { errors?: string[] }): void {
  const text = p.errors
    ? JSON.stringify({ ...JSON.parse(problemBody(p, requestId)), errors: p.errors })
    : problemBody(p, requestId);
  const headers: Record<string, string | number> = {
    'content-type': 'application/problem+json',
    'content-length': Buffer.byteLength(text),
  };
  for (let i = 0; p.headers && i < p.headers.length; i += 2)
    headers[p.headers[i] as string] = p.headers[i + 1] as string;
  res.writeHead(p.status, headers);
  res.end(text);
}
