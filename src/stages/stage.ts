/**
 * A stage: one job in the per-request pipeline. It is compiled once per route at config load
 * (returning null when the route does not use it) and then either lets the request continue
 * (`undefined`) or ends it with a Problem value. Async only when it must be.
 */
import type { GatewayConfig, RouteConfig } from '../config/schema.js';
import type { Authenticators } from '../auth/index.js';
import type { GatewayMetrics } from '../observability/metrics.js';
import type { RateLimiter } from '../ratelimit/limiter.js';
import type { RequestContext } from './context.js';
import type { Problem } from '../pipeline/problems.js';

export type StageOutcome = Problem | undefined;

export interface Stage {
  readonly name: string;
  run(ctx: RequestContext): StageOutcome | Promise<StageOutcome>;
}

/** Resources a runtime creates once and its stages share (closed when the runtime is replaced). */
export type SharedResources = {
  readonly rateLimiter: RateLimiter | null;
  readonly authenticators: Authenticators;
  /** the process's metrics (null in tests that do not need them) */
  readonly metrics: GatewayMetrics | null;
};

export interface StageFactory {
  readonly name: string;
  compile(route: RouteConfig, config: GatewayConfig, shared: SharedResources): Stage | null;
}
