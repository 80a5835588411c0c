import { bodyLimit } from '../stages/body-limit/index.js';
import { authenticate } from '../stages/authenticate/index.js';
import { authorize } from '../stages/authorize/index.js';
import { rateLimit } from '../stages/rate-limit/index.js';
import type { StageFactory } from './stage.js';

/**
 * Every per-route stage, in the order they run. Later capabilities add themselves here
 * without touching the server.
 */
export const STAGES: readonly StageFactory[] = [bodyLimit, authenticate, authorize, rateLimit];
