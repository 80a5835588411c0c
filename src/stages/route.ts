import type { RouteConfig } from '../config/schema.js';
import type { Service } from '../upstream/service.js';
import type { Stage } from './stage.js';

/** A route as the data plane uses it: config resolved to objects, stages compiled. */
export type CompiledRoute = {
  readonly name: string;
  readonly config: RouteConfig;
  readonly service: Service;
  /** length of `stripPrefix` without a trailing slash; 0 = none */
  readonly stripLength: number;
  readonly stages: readonly Stage[];
};
