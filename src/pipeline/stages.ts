import { bodyLimit } from '../stages/body-limit/index.js';
import { authenticate } from '../stages/authenticate/index.js';
import { authorize } from '../stages/authorize/index.js';
import { rateLimit } from '../stages/rate-limit/index.js';
import { limitFailedAuthentication } from '../stages/rate-limit/unauthenticated.js';
import type { StageFactory } from '../stages/stage.js';

/**
 * Every per-route stage, in the order they run. Later capabilities add themselves here
 * without touching the server. Authentication carries the limit on failed authentications
 * (`rateLimit.unauthenticated`), which must see its outcome.
 */
export const STAGES: readonly StageFactory[] = [
  bodyLimit,
  limitFailedAuthentication(authenticate),
  authorize,
  rateLimit,
];
