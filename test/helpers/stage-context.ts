/**
 * A request context for unit tests of a stage: a real (unconnected) request and response, a
 * route whose service has no target, and the fields the server would set, each overridable.
 */
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import type { Consumer } from '../../src/auth/types.js';
import type { GatewayConfig } from '../../src/config/schema.js';
import { compileStages } from '../../src/pipeline/chain.js';
import {
  defineStage,
  RequestContext,
  type CompiledRoute,
  type Dependency,
  type StageDeps,
  type StageInstance,
} from '../../src/stages/stage.js';
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
  /** the route's stage instances (for `responseHeaders` and `log`); default: none */
  stages?: StageInstance[];
};

/** A response as the proxy uses it, never sent anywhere. */
export class TestResponse extends ServerResponse {
  bytesOut = 0;
  exchange: { onClientClose(): void } | null = null;
}

let fixture: { config: GatewayConfig; service: Service } | undefined;

function buildFixture(): { config: GatewayConfig; service: Service } {
  const config = configFrom(`
services: { svc: { targets: ["http://127.0.0.1:9"] } }
routes: [ { name: test, match: { path: /** }, service: svc } ]
`);
  const svc = config.services['svc'];
  if (svc === undefined) throw new Error('test config');
  const noTargets = {
    origins: [],
    start: () => undefined,
    ready: async () => undefined,
    close: () => undefined,
  };
  return { config, service: new Service('svc', svc, { source: noTargets }) };
}

/** A route named `test` (path `/**`) over service `svc`, which has no target, with `instances`. */
export function testRoute(instances: StageInstance[] = []): CompiledRoute {
  fixture ??= buildFixture();
  const { config, service } = fixture;
  const route = config.routes[0] as GatewayConfig['routes'][number];
  // the instances go through the pipeline's own compile, as a route's would
  const stages = compileStages(
    instances.map((instance, i) =>
      defineStage({ name: `stage-${i}`, order: i, section: () => instance, create: (it) => it }),
    ),
    route,
    config,
    testDeps(),
  );
  return {
    name: route.name,
    config: route,
    service,
    stripLength: 0,
    ...stages,
    bodyLimit: config.limits.bodySize,
    responseTimeout: 0,
    retryPolicies: null,
  };
}

/** What the server would provide the stages: only the given dependencies. */
export function testDeps(...provided: Array<[Dependency<unknown>, unknown]>): StageDeps {
  const map = new Map<Dependency<unknown>, unknown>(provided);
  return {
    get<T>(dep: Dependency<T>): T {
      if (!map.has(dep)) throw new Error(`no ${dep.name} is provided to the stages`);
      return map.get(dep) as T;
    },
  };
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
  const ctx = new RequestContext(req, new TestResponse(req), testRoute(options.stages));
  const q = req.url.indexOf('?');
  ctx.requestId = 'req-1';
  ctx.path = q === -1 ? req.url : req.url.slice(0, q);
  ctx.query = q === -1 ? '' : req.url.slice(q + 1);
  ctx.clientIp = options.clientIp ?? '203.0.113.7';
  ctx.upstreamHeaders = options.upstreamHeaders ?? [];
  ctx.bodyLength = options.bodyLength ?? 0;
  ctx.consumer = options.consumer ?? null;
  return ctx;
}
