/**
 * Where a service's targets come from, whatever the mechanism (the static `targets` of its
 * config, DNS): the service builds its pools from `origins` and rebuilds them on `onChange`.
 * A leaf: the mechanisms and the service import it, it imports none of them.
 */

export interface Discovery {
  /** current target origins such as "http://10.0.0.5:8080" or "http://[fd00::5]:8080", sorted, no duplicates */
  readonly origins: readonly string[];
  /** starts periodic resolution; onChange gets the new list each time it differs from the previous one */
  start(onChange: (origins: readonly string[]) => void): void;
  /** resolves after the first lookup finished (success or not), or after `timeoutMs`, whichever first */
  ready(timeoutMs: number): Promise<void>;
  close(): void;
}

/** `origins` as a `Discovery` holds them: sorted, no duplicates */
export function sortedUnique(list: Iterable<string>): string[] {
  return [...new Set(list)].sort();
}
