import type { GatewayConfig, RouteConfig } from '../config/schema.js';
import type { RequestContext } from './context.js';
import { problems, type Problem } from './problems.js';
import type { SharedResources, Stage, StageFactory, StageOutcome } from './stage.js';

/** The route's stages, in the fixed order of `factories`, skipping those it does not use. */
export function compileChain(
  factories: readonly StageFactory[],
  route: RouteConfig,
  config: GatewayConfig,
  shared: SharedResources,
): Stage[] {
  const stages: Stage[] = [];
  for (const f of factories) {
    const stage = f.compile(route, config, shared);
    if (stage) stages.push(stage);
  }
  return stages;
}

export type ChainEnd = {
  proceed(ctx: RequestContext): void;
  reject(ctx: RequestContext, problem: Problem): void;
};

/** Runs stages synchronously until one returns a promise; only then goes async. */
export function runChain(ctx: RequestContext, stages: readonly Stage[], from: number, end: ChainEnd): void {
  for (let i = from; i < stages.length; i++) {
    let outcome: StageOutcome | Promise<StageOutcome>;
    try {
      outcome = (stages[i] as Stage).run(ctx);
    } catch {
      end.reject(ctx, problems.internal());
      return;
    }
    if (outcome === undefined) continue;
    if (outcome instanceof Promise) {
      outcome.then(
        (p) => (p === undefined ? runChain(ctx, stages, i + 1, end) : end.reject(ctx, p)),
        () => end.reject(ctx, problems.internal()),
      );
      return;
    }
    end.reject(ctx, outcome);
    return;
  }
  end.proceed(ctx);
}
