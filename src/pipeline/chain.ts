import type { GatewayConfig, RouteConfig } from '../config/schema.js';
import {
  Reply,
  type RequestContext,
  type RequestStage,
  type Stage,
  type StageDeps,
  type StageInstance,
  type StageOutcome,
} from '../stages/stage.js';
import type { Problem } from '../problems/registry.js';

export type RouteStages = {
  readonly stages: RequestStage[];
  readonly responseStages: StageInstance[];
  readonly logStages: StageInstance[];
  readonly instances: StageInstance[];
  /** the names of the stages the route uses, in order (the admin API shows them) */
  readonly stageNames: string[];
};

/** The route's stage instances, in the order of `stages`, skipping those it does not use. */
export function compileStages(
  stages: readonly Stage[],
  route: RouteConfig,
  config: GatewayConfig,
  deps: StageDeps,
): RouteStages {
  const out: RouteStages = { stages: [], responseStages: [], logStages: [], instances: [], stageNames: [] };
  for (const stage of stages) {
    const instance = stage.build(route, config, deps);
    if (instance === null) continue;
    out.instances.push(instance);
    out.stageNames.push(stage.name);
    if (instance.onRequest !== undefined) out.stages.push(instance as RequestStage);
    if (instance.onResponseHeaders !== undefined) out.responseStages.push(instance);
    if (instance.onLog !== undefined) out.logStages.push(instance);
  }
  return out;
}

/** Where a chain ends: `C` is the server's context (stages see it as a `RequestContext`). */
export type ChainEnd<C extends RequestContext> = {
  proceed(ctx: C): void;
  reject(ctx: C, problem: Problem): void;
  /** A stage answered the request itself (not an error): the server writes `reply`. */
  respond(ctx: C, reply: Reply): void;
  /**
   * A stage threw or its promise rejected, or `proceed`/`reject` threw: a bug, to answer with
   * `500 internal_error` (or a closed connection) and to report. Once the chain has gone async no
   * caller could catch it (an unhandled rejection ends the process), so every failure after the
   * chain started comes here. Must not throw; if it does, the connection is destroyed.
   */
  failed(ctx: C, err: unknown): void;
};

/** Runs stages synchronously until one returns a promise; only then goes async. */
export function runChain<C extends RequestContext>(
  ctx: C,
  stages: readonly RequestStage[],
  from: number,
  end: ChainEnd<C>,
): void {
  for (let i = from; i < stages.length; i++) {
    let outcome: StageOutcome | Promise<StageOutcome>;
    try {
      outcome = (stages[i] as RequestStage).onRequest(ctx);
    } catch (err) {
      fail(ctx, end, err);
      return;
    }
    if (outcome === undefined) continue;
    if (outcome instanceof Promise) {
      const next = i + 1;
      outcome.then(
        (p) => {
          if (p === undefined) runChain(ctx, stages, next, end);
          else settle(ctx, end, p);
        },
        (err: unknown) => fail(ctx, end, err),
      );
      return;
    }
    settle(ctx, end, outcome);
    return;
  }
  try {
    end.proceed(ctx);
  } catch (err) {
    fail(ctx, end, err);
  }
}

function settle<C extends RequestContext>(ctx: C, end: ChainEnd<C>, p: Problem | Reply): void {
  try {
    if (p instanceof Reply) end.respond(ctx, p);
    else end.reject(ctx, p);
  } catch (err) {
    fail(ctx, end, err);
  }
}

function fail<C extends RequestContext>(ctx: C, end: ChainEnd<C>, err: unknown): void {
  try {
    end.failed(ctx, err);
  } catch {
    // the failure path itself failed: ending the connection is all that is left
    ctx.req.socket.destroy();
  }
}
