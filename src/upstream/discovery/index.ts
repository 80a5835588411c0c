/**
 * A service's `Discovery` as its config asks: DNS when it has a `discovery` section (dns.ts),
 * else its static `targets` (static.ts).
 */
import type { DnsConfig, ServiceConfig } from '../../config/schema.js';
import type { Logger } from '../../observability/logger.js';
import type { Discovery } from './discovery.js';
import { DnsDiscovery, createResolver } from './dns.js';
import { staticDiscovery } from './static.js';

export type { Discovery } from './discovery.js';

export function createDiscovery(
  service: string,
  config: ServiceConfig,
  dns: DnsConfig | undefined,
  logger: Logger,
): Discovery {
  if (config.discovery) return new DnsDiscovery(service, config.discovery, createResolver(dns), logger);
  return staticDiscovery(config.targets ?? []);
}

export {
  AddressAnswers,
  DnsDiscovery,
  applyOutcome,
  buildOrigins,
  createResolver,
  diffOrigins,
  errorCode,
  INITIAL_STATE,
  lookupOrigins,
  lowestPriority,
  MIN_TTL_DELAY_MS,
  NO_KNOWN_ADDRESSES,
  nextDelay,
  originOf,
  type DiscoveryState,
  type DnsLookup,
  type Endpoint,
  type Failing,
  type KnownAddresses,
  type LookupOutcome,
  type Step,
  type StepLog,
} from './dns.js';
export { staticDiscovery } from './static.js';
