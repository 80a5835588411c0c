/**
 * The stage contract: what a stage is, what it gets, and the request context it works on. It
 * names no capability: a stage asks for what it needs through `deps` (keys it declares itself),
 * keeps its per-request state in its own scratch slots, and the pipeline (pipeline/) knows only
 * this module. Modelled on Kong's plugin phases and Envoy's filter factories:
 *
 * - a definition (`defineStage`) declares its name, its place in the order, the part of the
 *   config it reads (`section`: null when a route does not use it) and `create`, called once
 *   per route when a config is loaded;
 * - an instance may act on the request (`onRequest`: continue with `undefined`, end the request
 *   with a Problem value, or answer it itself with a `Reply`, which is not an error: a CORS
 *   preflight, a fixed response, a redirect; async only when it must be), on the upstream response's
 *   headers (`onResponseHeaders`: add, remove or rewrite them in place), and on the access-log
 *   record (`onLog`: fill in its fields); `close` when the runtime is replaced.
 */
import type { IncomingMessage } from 'node:http';
import type { Consumer } from '../auth/types.js';
import type { GatewayConfig, RouteConfig } from '../config/schema.js';
import type { AccessRecord } from '../observability/access-log/index.js';
import type { Problem } from '../problems/registry.js';
import type { ProxyRequest, ProxyResponse } from '../upstream/proxy.js';
import type { RetryPolicy } from '../upstream/retry-policy.js';
import type { Service } from '../upstream/service.js';

/**
 * An answer the gateway makes itself that is not an error (a CORS preflight, a fixed response,
 * a redirect): a stage returns it to end the chain, and the server writes it. Stages build their
 * replies once per route (the headers a flat [name, value, ...] list, without Content-Length).
 */
export class Reply {
  constructor(
    readonly status: number,
    readonly headers: readonly string[],
    readonly body: Buffer = EMPTY_BODY,
  ) {}
}

const EMPTY_BODY = Buffer.alloc(0);

export type StageOutcome = Problem | Reply | undefined;

export interface StageInstance {
  onRequest?(ctx: RequestContext): StageOutcome | Promise<StageOutcome>;
  /**
   * The upstream's response headers, as a flat [name, value, ...] list (lower-case names are
   * the stage's own), before they are sent: changed in place. Not called for the gateway's own
   * answers (see `RequestContext.answerHeaders`).
   */
  onResponseHeaders?(ctx: RequestContext, headers: string[], status: number): void;
  /** The request ended: the stage fills in its fields of the access-log record. */
  onLog?(ctx: RequestContext, record: AccessRecord): void;
  /** The runtime that created the instance is being closed. */
  close?(): Promise<void> | void;
}

/** An instance that acts on requests: what the chain runs. */
export type RequestStage = StageInstance & Pick<Required<StageInstance>, 'onRequest'>;

/** A capability (or anything else) a stage needs, provided by the server under this key. */
export class Dependency<T> {
  /** never set: carries `T` for `StageDeps.get` */
  declare readonly type: T;
  constructor(readonly name: string) {}
}

export interface StageDeps {
  /** throws when the server provides no such dependency (a wiring bug, found at load) */
  get<T>(dep: Dependency<T>): T;
}

export interface StageDefinition<Section> {
  readonly name: string;
  /** where it runs: lower first; unique (pipeline/stages.ts checks) */
  readonly order: number;
  /** this route's part of the config for the stage, or null when the route does not use it */
  section(route: RouteConfig, config: GatewayConfig): Section | null;
  /** null: the route has nothing for the stage to do after all (what it needs is not built) */
  create(section: Section, deps: StageDeps, route: RouteConfig): StageInstance | null;
}

/** A definition with its section type erased: what the stage list holds. */
export interface Stage {
  readonly name: string;
  readonly order: number;
  /** null when the route does not use the stage */
  build(route: RouteConfig, config: GatewayConfig, deps: StageDeps): StageInstance | null;
}

export function defineStage<Section>(def: StageDefinition<Section>): Stage {
  return {
    name: def.name,
    order: def.order,
    build(route, config, deps) {
      const section = def.section(route, config);
      return section === null ? null : def.create(section, deps, route);
    },
  };
}

let scratchSlots = 0;

/**
 * One slot of per-request state on the context, owned by the stage that declares it (at module
 * load: a key is an index into a small array, no map lookup per request).
 */
export class ScratchKey<T> {
  declare readonly type: T;
  readonly index = scratchSlots++;
  constructor(readonly name: string) {}
}

/** A route as the data plane uses it: config resolved to objects, stages created. */
export type CompiledRoute = {
  readonly name: string;
  readonly config: RouteConfig;
  /**
   * the route's service (`service`, or the heaviest of `services`): each request's until a stage
   * picks another (`RequestContext.service`); null: the route answers in its stages (`respond`,
   * `redirect`) and never proxies
   */
  readonly service: Service | null;
  /** length of `stripPrefix` without a trailing slash; 0 = none */
  readonly stripLength: number;
  /** the instances with `onRequest`, in order: the chain */
  readonly stages: readonly RequestStage[];
  /** the instances with `onResponseHeaders`, in order */
  readonly responseStages: readonly StageInstance[];
  /** the instances with `onLog`, in order */
  readonly logStages: readonly StageInstance[];
  /** every instance, closed with the runtime */
  readonly instances: readonly StageInstance[];
  // the route's own upstream limits (route.limits, route.timeouts, route.retry), resolved at load
  /** the request body's limit in bytes: `limits.bodySize` of the route, else the gateway's */
  readonly bodyLimit: number;
  /** `timeouts.response` of the route in ms; 0 = each service's own */
  readonly responseTimeout: number;
  /** the route's `retry` over each service it reaches (sharing that service's budget); null = theirs */
  readonly retryPolicies: ReadonlyMap<Service, RetryPolicy> | null;
  /** the names of the stages the route uses, in order (absent in hand-built test routes) */
  readonly stageNames?: readonly string[];
};

const NO_HEADERS: string[] = [];

/**
 * What one request carries through the pipeline. Stages read from it and record what they
 * learn in their scratch slots; they never talk to each other directly. The one exception is
 * `consumer`: the identity authentication establishes is what authorization, rate limiting
 * and the access log act on, so it is a field of its own. A class, so every context has one
 * shape. Created by the server once the request is routed; the server sets the fields below
 * the constructor before the stages run (no allocation beyond the object). `Res` is the
 * server's response object; stages see it only as a `ProxyResponse`.
 */
export class RequestContext<Res extends ProxyResponse = ProxyResponse> implements ProxyRequest {
  /** set by authentication */
  consumer: Consumer | null = null;
  /**
   * where the request goes: the route's service, unless a stage picks another (weighted or
   * canary routing, after authentication: stickiness needs the consumer)
   */
  service: Service | null;
  /**
   * Headers (a flat [name, value, ...] list) a stage wants on every answer the gateway makes
   * itself for this request, problems and replies alike: CORS headers, so a browser can read a
   * 401 or a 429. null = none.
   */
  answerHeaders: readonly string[] | null = null;
  /**
   * The path and query the upstream gets, when a stage rewrote them (transform); null = the
   * routed path less `stripPrefix`, and the query.
   */
  upstreamTarget: string | null = null;
  /** the stages' per-request state (ScratchKey), made on the first `set` */
  private scratch: unknown[] | null = null;

  // set by the server before the stages run
  requestId = '';
  /** normalised path, the one routing and the upstream see */
  path = '';
  query = '';
  clientIp = '';
  /** request headers to send upstream: a flat [name, value, ...] list, already cleaned */
  upstreamHeaders: string[] = NO_HEADERS;
  /** declared body length; -1 = chunked; 0 = no body */
  bodyLength = 0;
  /** performance.now() when the request arrived */
  startTime = 0;
  /** set when the client sent `Expect: 100-continue`: the 100 is sent only once we proxy */
  expectContinue = false;

  // recorded by the proxy
  /** request body bytes sent upstream (a declared length, or counted for chunked bodies) */
  bytesIn = 0;
  /** upstream attempts made (retries included); 0 = never proxied */
  attempts = 0;
  /** the target of the last attempt ("host:port") */
  upstream: string | null = null;
  /** milliseconds the last attempt took, until its response ended or failed */
  upstreamDurationMs = -1;
  /** why the last attempt failed without an answer (access log), e.g. a refused certificate */
  upstreamError: string | null = null;

  constructor(
    readonly req: IncomingMessage,
    readonly res: Res,
    readonly route: CompiledRoute,
  ) {
    this.service = route.service;
  }

  get<T>(key: ScratchKey<T>): T | undefined {
    const scratch = this.scratch;
    return scratch === null ? undefined : (scratch[key.index] as T | undefined);
  }

  set<T>(key: ScratchKey<T>, value: T): void {
    (this.scratch ??= [])[key.index] = value;
  }

  /** The route's stages rewrite the upstream response's headers (called by the proxy). */
  responseHeaders(headers: string[], status: number): void {
    const stages = this.route.responseStages;
    for (let i = 0; i < stages.length; i++)
      (stages[i] as StageInstance).onResponseHeaders?.(this, headers, status);
  }

  /** The route's stages fill in their access-log fields (called by the observer). */
  log(record: AccessRecord): void {
    const stages = this.route.logStages;
    for (let i = 0; i < stages.length; i++) (stages[i] as StageInstance).onLog?.(this, record);
  }
}
