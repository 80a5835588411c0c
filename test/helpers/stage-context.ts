/**
 * A request context for unit tests of a stage: a real (unconnected) request and response, a
 * route whose service has no target, and the fields the server would set, each overridable.
 */
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import type { Consumer } from '../../src/auth/types.js';
import { RequestContext } from '../../src/stages/context.js';
import type { CompiledRoute } from '../../src/stages/route.js';
import { Service } from '../../src/upstream/service.js';
import { configFrom } from './gateway.js';

export type TestContextOptions = {
  method?: string;
  url?: string;
  /** request headers, as the client sent them */
  headers?: Record<string, string>;
  clientIp?: string;
  /** declared body length; -1 = chunked */
  bodyLength?: number;
  consumer?: Consumer | null;
  upstreamHeaders?: string[];
  route?: CompiledRoute;
};

/** A response as the proxy uses it, never sent anywhere. */
export class TestResponse extends ServerResponse {
  bytesOut = 0;
  exchange: { onClientClose(): void } | null = null;
}

let defaultRoute: CompiledRoute | undefined;

/** A route named `test` (path `/**`) over service `svc`, which has no target. */
export function testRoute(): CompiledRoute {
  if (defaultRoute !== undefined) return defaultRoute;
  const config = configFrom(`
services: { svc: { targets: ["http://127.0.0.1:9"] } }
routes: [ { name: test, match: { path: /** }, service: svc } ]
`);
  const route = config.routes[0];
  const svc = config.services['svc'];
  if (route === undefined || svc === undefined) throw new Error('test config');
  const noTargets = {
    origins: [],
    start: () => undefined,
    ready: async () => undefined,
    close: () => undefined,
  };
  const service = new Service('svc', svc, { source: noTargets });
  defaultRoute = { name: route.name, config: route, service, stripLength: 0, stages: [] };
  return defaultRoute;
}

export function testContext(options: TestContextOptions = {}): RequestContext<TestResponse> {
  const req = new IncomingMessage(new Socket());
  req.method = options.method ?? 'GET';
  req.url = options.url ?? '/';
  req.httpVersionMajor = 1;
  req.httpVersionMinor = 1;
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    req.headers[name.toLowerCase()] = value;
    req.rawHeaders.push(name, value);
  }
  const ctx = new RequestContext(req, new TestResponse(req), options.route ?? testRoute());
  ctx.requestId = 'req-1';
  ctx.path = req.url.split('?')[0] ?? '/';
  ctx.query = req.url.includes('?') ? req.url.slice(req.url.indexOf('?') + 1) : '';
  ctx.clientIp = options.clientIp ?? '203.0.113.7';
  ctx.upstreamHeaders = options.upstreamHeaders ?? [];
  ctx.bodyLength = options.bodyLength ?? 0;
  ctx.consumer = options.consumer ?? null;
  return ctx;
}
