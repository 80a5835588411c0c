/**
 * The client's address. X-Forwarded-For is believed only when the peer is a trusted proxy,
 * and then only up to the first untrusted hop from the right (the leftmost entries are
 * whatever the client chose to send).
 */
import { BlockList, isIPv4 } from 'node:net';
import { addAddressOrCidr } from '../../config/checks.js';

export class TrustedProxies {
  private readonly list = new BlockList();
  readonly empty: boolean;

  constructor(entries: readonly string[]) {
    for (const e of entries) {
      const err = addAddressOrCidr(this.list, e);
      if (err) throw new Error(err);
    }
    this.empty = entries.length === 0;
  }

  has(address: string): boolean {
    if (this.empty || address === '') return false;
    return this.list.check(address, isIPv4(address) ? 'ipv4' : 'ipv6');
  }
}

/** `::ffff:10.1.2.3` → `10.1.2.3` */
export function plainAddress(address: string | undefined): string {
  if (!address) return '';
  return address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
}

export function clientIpFor(peer: string, forwardedFor: string | undefined, trusted: TrustedProxies): string {
  if (forwardedFor === undefined || !trusted.has(peer)) return peer;
  const hops = forwardedFor.split(',');
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = plainAddress((hops[i] ?? '').trim());
    if (hop === '') continue;
    if (!trusted.has(hop)) return hop;
  }
  return plainAddress((hops[0] ?? '').trim()) || peer;
}

/** The X-Forwarded-For to send upstream: the trusted chain plus the peer, or just the peer. */
export function forwardedForUpstream(
  peer: string,
  forwardedFor: string | undefined,
  trusted: TrustedProxies,
): string {
  return forwardedFor !== undefined && trusted.has(peer) ? `${forwardedFor}, ${peer}` : peer;
}
