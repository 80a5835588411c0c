/** The `targets` of a service's config as a Discovery that never changes. */
import { sortedUnique, type Discovery } from './discovery.js';

export function staticDiscovery(targets: readonly string[]): Discovery {
  const origins: readonly string[] = Object.freeze(sortedUnique(targets.map((t) => new URL(t).origin)));
  return {
    origins,
    start: () => undefined,
    ready: () => Promise.resolve(),
    close: () => undefined,
  };
}
