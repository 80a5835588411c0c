/**
 * Where a service's targets come from: the static `targets` of its config, or DNS (`discovery`,
 * see dns.ts). The service builds its pools from `origins` and rebuilds them on `onChange`.
 */
import type { DnsConfig, ServiceConfig } from '../../config/schema.js';
import type { Logger } from '../../observability/logger.js';
import { DnsDiscovery, createResolver } from './dns.js';
import { staticDiscovery } from './static.js';

export interface Discovery {
  /** current target origins such as "http://10.0.0.5:8080" or "http://[fd00::5]:8080", sorted, no duplicates */
  readonly origins: readonly string[];
  /** starts periodic resolution; onChange gets the new list each time it differs from the previous one */
  start(onChange: (origins: readonly string[]) => void): void;
  /** resolves after the first lookup finished (success or not), or after `timeoutMs`, whichever first */
  ready(timeoutMs: number): Promise<void>;
  close(): void;
}

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
  sortedUnique,
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
