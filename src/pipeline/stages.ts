import { authenticate } from '../stages/authenticate/index.js';
import { authorize } from '../stages/authorize/index.js';
import { bodyLimit } from '../stages/body-limit/index.js';
import { rateLimit } from '../stages/rate-limit/index.js';
import { limitFailedAuthentication } from '../stages/rate-limit/unauthenticated.js';
import { serviceSplit } from '../stages/service-split/index.js';
import type { Stage } from '../stages/stage.js';
// edge policies (router/policy-config.ts)
import { cors } from '../stages/cors/index.js';
import { ipFilter } from '../stages/ip-filter/index.js';
import { respond } from '../stages/respond/index.js';
import { transform } from '../stages/transform/index.js';

/**
 * Every per-route stage. Adding one is a folder under `src/stages/` and a line here; the list
 * runs in the order the stages declare (`order`), checked once at load. Authentication carries
 * the limit on failed authentications (`rateLimit.unauthenticated`), which must see its outcome.
 */
export const STAGES: readonly Stage[] = inOrder([
  bodyLimit,
  limitFailedAuthentication(authenticate),
  authorize,
  rateLimit,
  serviceSplit,
  // edge policies: IP lists first, CORS before authentication (a preflight has no
  // credentials), routes that answer themselves next, transformation last before the proxy
  ipFilter,
  cors,
  respond,
  transform,
]);

function inOrder(stages: Stage[]): readonly Stage[] {
  const sorted = [...stages].sort((a, b) => a.order - b.order);
  for (let i = 1; i < sorted.length; i++) {
    const [before, stage] = [sorted[i - 1] as Stage, sorted[i] as Stage];
    if (before.order === stage.order)
      throw new Error(`stages ${before.name} and ${stage.name} both declare order ${stage.order}`);
  }
  return Object.freeze(sorted);
}
