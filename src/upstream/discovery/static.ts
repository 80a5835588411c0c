/** The `targets` of a service's config as a Discovery that never changes. */
import type { Discovery } from './index.js';
import { sortedUnique } from './dns.js';

export function staticDiscovery(targets: readonly string[]): Discovery {
  const origins: readonly string[] = Object.freeze(sortedUnique(targets.map((t) => new URL(t).origin)));
  return {
    origins,
    start: () => undefined,
    ready: () => Promise.resolve(),
    close: () => undefined,
  };
}
