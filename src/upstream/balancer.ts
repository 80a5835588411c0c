/**
 * How a target is picked among the available ones: round-robin, random, or least-request (the
 * "power of two choices": the less busy of two picked at random, which nearly matches scanning
 * all of them without the herd effect of everyone choosing the same least-loaded target).
 * `tried` holds targets a retry should avoid; when every target was tried, any may be picked.
 */
export type Balanced = { inflight: number };

export interface Balancer {
  pick<T extends Balanced>(targets: readonly T[], tried: readonly T[] | null): T;
}

export function createBalancer(
  kind: 'round-robin' | 'least-request' | 'random',
  random: () => number = Math.random,
): Balancer {
  switch (kind) {
    case 'round-robin':
      return new RoundRobin();
    case 'random':
      return new RandomPick(random);
    case 'least-request':
      return new LeastRequest(random);
  }
}

class RoundRobin implements Balancer {
  private next = 0;
  pick<T extends Balanced>(targets: readonly T[], tried: readonly T[] | null): T {
    const n = targets.length;
    // Only first attempts move the turn: were a retry to move it past the target it took,
    // the turn would fall back on the failing target, which then got every first attempt.
    for (let step = 0; step < n; step++) {
      const i = (this.next + step) % n;
      const t = targets[i] as T;
      if (tried === null) {
        this.next = (i + 1) % n;
        return t;
      }
      if (!tried.includes(t)) return t;
    }
    return targets[this.next % n] as T;
  }
}

class RandomPick implements Balancer {
  constructor(private readonly random: () => number) {}
  pick<T extends Balanced>(targets: readonly T[], tried: readonly T[] | null): T {
    const n = targets.length;
    const start = Math.floor(this.random() * n);
    if (tried !== null) {
      for (let step = 0; step < n; step++) {
        const t = targets[(start + step) % n] as T;
        if (!tried.includes(t)) return t;
      }
    }
    return targets[start] as T;
  }
}

class LeastRequest implements Balancer {
  constructor(private readonly random: () => number) {}
  pick<T extends Balanced>(targets: readonly T[], tried: readonly T[] | null): T {
    const candidates = tried === null ? targets : targets.filter((t) => !tried.includes(t));
    const pool = candidates.length > 0 ? candidates : targets;
    const n = pool.length;
    if (n === 1) return pool[0] as T;
    const a = Math.floor(this.random() * n);
    let b = Math.floor(this.random() * (n - 1));
    if (b >= a) b++;
    const ta = pool[a] as T;
    const tb = pool[b] as T;
    return tb.inflight < ta.inflight ? tb : ta;
  }
}
