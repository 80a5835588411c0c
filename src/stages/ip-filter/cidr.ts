/**
 * A set of CIDRs compiled once into a matcher on the address text. node's BlockList costs about
 * 1.8 µs a check (it builds a SocketAddress each time); parsing the address here and comparing
 * masked integers costs a few tens of nanoseconds. IPv4-mapped IPv6 (`::ffff:10.1.2.3`, in the
 * list or in the address) is the IPv4 address it maps.
 */
import { isIP } from 'node:net';

export class CidrSet {
  /** IPv4 networks and masks, as unsigned 32-bit integers */
  private readonly v4net: number[] = [];
  private readonly v4mask: number[] = [];
  /** IPv6 networks as 8 hextets each, with their prefix lengths */
  private readonly v6: Array<{ net: Uint16Array; bits: number }> = [];
  readonly size: number;

  /** `entries` are checked by the config loader (cidrProblem); an invalid one throws. */
  constructor(entries: readonly string[]) {
    for (const entry of entries) this.add(entry);
    this.size = entries.length;
  }

  private add(entry: string): void {
    const slash = entry.indexOf('/');
    const addr = slash === -1 ? entry : entry.slice(0, slash);
    const family = isIP(addr);
    if (family === 0) throw new Error(`"${entry}" is not an IP address or CIDR`);
    let bits = slash === -1 ? (family === 4 ? 32 : 128) : Number(entry.slice(slash + 1));
    if (family === 6) {
      const words = parseV6(addr);
      if (words === null) throw new Error(`"${entry}" is not an IP address or CIDR`);
      if (isMapped(words) && bits >= 96) {
        this.addV4(((words[6] as number) * 0x10000 + (words[7] as number)) >>> 0, bits - 96);
        return;
      }
      this.v6.push({ net: words, bits });
      return;
    }
    bits = Math.min(32, bits);
    this.addV4(parseV4(addr), bits);
  }

  private addV4(net: number, bits: number): void {
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    this.v4net.push((net & mask) >>> 0);
    this.v4mask.push(mask);
  }

  /** `address` as the server records it (an IPv4 or IPv6 text); false for anything else. */
  has(address: string): boolean {
    if (address.indexOf(':') === -1) {
      const v4 = parseV4(address);
      return v4 !== -1 && this.hasV4(v4);
    }
    const words = parseV6(address);
    if (words === null) return false;
    if (isMapped(words)) return this.hasV4(((words[6] as number) * 0x10000 + (words[7] as number)) >>> 0);
    const list = this.v6;
    for (let i = 0; i < list.length; i++) {
      const { net, bits } = list[i] as { net: Uint16Array; bits: number };
      if (prefixEqual(words, net, bits)) return true;
    }
    return false;
  }

  private hasV4(address: number): boolean {
    const nets = this.v4net;
    const masks = this.v4mask;
    for (let i = 0; i < nets.length; i++) {
      if ((address & (masks[i] as number)) >>> 0 === nets[i]) return true;
    }
    return false;
  }
}

/** dotted quad → unsigned 32-bit integer; -1 when it is not one */
export function parseV4(s: string): number {
  let value = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x2e) {
      if (digits === 0 || ++dots > 3) return -1;
      value = value * 256 + part;
      part = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39) {
      part = part * 10 + (c - 0x30);
      if (++digits > 3 || part > 255) return -1;
    } else return -1;
  }
  if (dots !== 3 || digits === 0) return -1;
  return value * 256 + part;
}

/** IPv6 text (with `::` and an embedded IPv4 tail) → 8 hextets; null when it is not one */
export function parseV6(s: string): Uint16Array | null {
  const zone = s.indexOf('%');
  if (zone !== -1) s = s.slice(0, zone);
  const out = new Uint16Array(8);
  const gap = s.indexOf('::');
  const head = gap === -1 ? s : s.slice(0, gap);
  const tail = gap === -1 ? '' : s.slice(gap + 2);
  if (tail.includes('::')) return null;
  const headWords = head === '' ? [] : head.split(':');
  const tailWords = tail === '' ? [] : tail.split(':');
  const words: number[] = [];
  const push = (list: string[], isLast: boolean): boolean => {
    for (let i = 0; i < list.length; i++) {
      const w = list[i] as string;
      if (isLast && i === list.length - 1 && w.includes('.')) {
        const v4 = parseV4(w);
        if (v4 === -1) return false;
        words.push(v4 >>> 16, v4 & 0xffff);
        continue;
      }
      if (!/^[0-9A-Fa-f]{1,4}$/.test(w)) return false;
      words.push(parseInt(w, 16));
    }
    return true;
  };
  if (gap === -1) {
    if (!push(headWords, true) || words.length !== 8) return null;
    out.set(words);
    return out;
  }
  if (!push(headWords, false)) return null;
  const n = words.length;
  if (!push(tailWords, true)) return null;
  const tailCount = words.length - n;
  if (words.length > 7) return null;
  for (let i = 0; i < n; i++) out[i] = words[i] as number;
  for (let i = 0; i < tailCount; i++) out[8 - tailCount + i] = words[n + i] as number;
  return out;
}

function isMapped(w: Uint16Array): boolean {
  return w[0] === 0 && w[1] === 0 && w[2] === 0 && w[3] === 0 && w[4] === 0 && w[5] === 0xffff;
}

function prefixEqual(a: Uint16Array, b: Uint16Array, bits: number): boolean {
  let i = 0;
  for (; bits >= 16; bits -= 16, i++) if (a[i] !== b[i]) return false;
  if (bits === 0) return true;
  const mask = (0xffff << (16 - bits)) & 0xffff;
  return ((a[i] as number) & mask) === ((b[i] as number) & mask);
}
