/**
 * Choosing one of a route's services. Pure, no I/O:
 *
 * - `SmoothWeighted`: nginx's smooth weighted round robin. Deterministic, and every run of
 *   sum(weights) picks gives each service exactly its weight, spread out (5:95 is not five in a
 *   row), so the split over N requests is off by less than one cycle.
 * - `stickyIndex`: a hash of the subject (consumer id, or client address) to a point in
 *   [0, sum(weights)), mapped onto the cumulative weights. Same subject, same service, on every
 *   instance and across restarts, with no shared state; changing the weights moves only the
 *   subjects whose point crosses a boundary.
 * - `cookieValue`: one cookie of a Cookie header, without parsing the others.
 */

export class SmoothWeighted {
  private readonly current: number[];
  private readonly total: number;

  constructor(private readonly weights: readonly number[]) {
    this.current = weights.map(() => 0);
    this.total = weights.reduce((a, b) => a + b, 0);
  }

  /** the index of the next pick */
  next(): number {
    const { weights, current } = this;
    let best = 0;
    let bestValue = -Infinity;
    for (let i = 0; i < weights.length; i++) {
      const value = (current[i] as number) + (weights[i] as number);
      current[i] = value;
      if (value > bestValue) {
        best = i;
        bestValue = value;
      }
    }
    current[best] = (current[best] as number) - this.total;
    return best;
  }
}

/**
 * 32-bit FNV-1a of the UTF-16 code units, then murmur3's finaliser: FNV alone leaves ids that
 * differ only in their last characters (`user-1`, `user-2`) close together, the finaliser
 * spreads them over the whole range.
 */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The service index `subject` sticks to, given the cumulative weights (last = the sum, > 0). */
export function stickyIndex(subject: string, cumulative: readonly number[]): number {
  const total = cumulative[cumulative.length - 1] as number;
  // the hash's 32 bits scaled to the sum: no modulo bias toward the first services
  const point = Math.floor((hash32(subject) / 0x1_0000_0000) * total);
  for (let i = 0; i < cumulative.length; i++) if (point < (cumulative[i] as number)) return i;
  return cumulative.length - 1;
}

/** The value of cookie `name` in a Cookie header (the first, if repeated), or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  let at = 0;
  while (at < header.length) {
    let end = header.indexOf(';', at);
    if (end === -1) end = header.length;
    const eq = header.indexOf('=', at);
    if (eq !== -1 && eq < end && header.slice(at, eq).trim() === name) {
      let value = header.slice(eq + 1, end).trim();
      if (value.length >= 2 && value.charCodeAt(0) === 0x22 && value.charCodeAt(value.length - 1) === 0x22)
        value = value.slice(1, -1);
      return value;
    }
    at = end + 1;
  }
  return undefined;
}
