/**
 * Who a request is counted as (the subject), and the Redis key of a tier and subject. Pure.
 *
 * Keys: `<prefix>{rl:<tier>:<subject>}`. The braces make `rl:<tier>:<subject>` the Redis
 * Cluster hash tag, so a subject must never contain `}`; and two different (tier, subject) pairs
 * must never share a key. Tier names cannot contain `:` or braces (the schema's pattern).
 */
import { isIPv4 } from 'node:net';

/**
 * One-to-one: a subject without `{`, `}` or `%` is kept as it is (ordinary ids and addresses
 * keep the keys they always had); any other has exactly those three characters
 * percent-encoded (`%7b`, `%7d`, `%25`). Kept subjects contain no `%` and encoded ones always
 * do, so no two subjects meet, and neither kind contains a brace.
 */
export function escapeSubject(subject: string): string {
  for (let i = 0; i < subject.length; i++) {
    const c = subject.charCodeAt(i);
    if (c === 0x7b || c === 0x7d || c === 0x25) return subject.replace(/[{}%]/g, encodeChar);
  }
  return subject;
}

const encodeChar = (c: string) => (c === '{' ? '%7b' : c === '}' ? '%7d' : '%25');

/** the inverse of escapeSubject (tests and tools reading keys) */
export function unescapeSubject(escaped: string): string {
  return escaped.includes('%')
    ? escaped.replace(/%(7b|7d|25)/g, (_, h: string) => (h === '7b' ? '{' : h === '7d' ? '}' : '%'))
    : escaped;
}

export function rateLimitKey(prefix: string, tier: string, subject: string): string {
  return `${prefix}{rl:${tier}:${escapeSubject(subject)}}`;
}

/**
 * The subject of an anonymous caller: `ip:<IPv4 address>`, or for IPv6 the network of its
 * first `ipv6Prefix` bits, `ip:<network>/<bits>` (`ip:2001:db8:1:2::/64`): one client usually
 * holds a whole /64, and counting each address would give it 2⁶⁴ budgets. IPv4-mapped IPv6
 * addresses (`::ffff:192.0.2.1`) are IPv4. With a prefix of 128 an IPv6 address is counted
 * alone, as `ip:<address in canonical form>`.
 */
export function ipSubject(ip: string, ipv6Prefix: number): string {
  if (isIPv4(ip)) return `ip:${ip}`;
  const groups = parseIPv6(ip);
  if (groups === null) return `ip:${ip}`; // not an address (cannot come from the socket): as is
  if (groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0) {
    if (groups[5] === 0xffff) {
      const hi = groups[6] as number;
      const lo = groups[7] as number;
      return `ip:${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
    }
  }
  let bits = ipv6Prefix;
  for (let i = 0; i < 8; i++) {
    const keep = Math.max(0, Math.min(16, bits));
    groups[i] = keep === 0 ? 0 : (groups[i] as number) & ((0xffff << (16 - keep)) & 0xffff);
    bits -= 16;
  }
  const network = formatIPv6(groups);
  return ipv6Prefix >= 128 ? `ip:${network}` : `ip:${network}/${ipv6Prefix}`;
}

/** eight 16-bit groups, or null; accepts `::`, an embedded IPv4 tail and a `%zone` (dropped) */
export function parseIPv6(text: string): number[] | null {
  let s = text;
  const zone = s.indexOf('%');
  if (zone !== -1) s = s.slice(0, zone);
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  const lastColon = s.lastIndexOf(':');
  if (lastColon !== -1 && s.indexOf('.', lastColon) !== -1) {
    // an IPv4 tail (`::ffff:192.0.2.1`) becomes its two groups
    const v4 = s.slice(lastColon + 1);
    if (!isIPv4(v4)) return null;
    const o = v4.split('.').map(Number) as [number, number, number, number];
    s = `${s.slice(0, lastColon + 1)}${((o[0] << 8) | o[1]).toString(16)}:${((o[2] << 8) | o[3]).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const parse = (part: string): number[] | null => {
    if (part === '') return [];
    const out: number[] = [];
    for (const g of part.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const head = parse(halves[0] as string);
  const rest = halves.length === 2 ? parse(halves[1] as string) : [];
  if (head === null || rest === null) return null;
  const given = head.length + rest.length;
  if (halves.length === 1 ? given !== 8 : given > 7) return null;
  return [...head, ...Array<number>(8 - given).fill(0), ...rest];
}

/** RFC 5952: lower case, no leading zeros, the longest run (≥ 2) of zero groups as `::` */
export function formatIPv6(groups: readonly number[]): string {
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}
