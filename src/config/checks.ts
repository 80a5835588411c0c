/**
 * The checks across fields that a schema cannot express, each defined beside the section it
 * belongs to, in the order their problems are listed (on the same line and field). Each reads
 * only the parts of the file that satisfied the schema (fields.ts, ConfigParts), so they run even
 * when the schema found problems elsewhere, and one run reports everything.
 */
import { checkAuth, checkKeyFiles } from '../auth/config.js';
import { checkRateLimit } from '../ratelimit/config.js';
import { checkRoutes } from '../router/config.js';
import { checkServiceSplit } from '../router/split-config.js';
import { checkPolicy } from '../router/policy-config.js';
import { checkServer } from '../server/config.js';
import { checkStores } from '../stores/config.js';
import { checkRoutePolicy, checkServices, checkUpstreamTlsFiles } from '../upstream/config.js';
import type { ConfigCheck, ConfigParts, Report } from './fields.js';

/** Pure: the parts in, problems out. */
export const CHECKS: readonly ConfigCheck[] = [
  checkServer,
  checkServices,
  checkRoutes,
  checkServiceSplit,
  checkRoutePolicy,
  checkPolicy,
  checkStores,
  checkRateLimit,
  checkAuth,
];

/** The checks that read the files the config names (loadConfigFile runs them; loadConfigText does not). */
export const FILE_CHECKS: ReadonlyArray<(config: ConfigParts, report: Report) => Promise<void>> = [
  checkKeyFiles,
  checkUpstreamTlsFiles,
];
