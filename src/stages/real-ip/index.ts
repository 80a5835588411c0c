/**
 * The client's address. X-Forwarded-For is believed only when the peer is a trusted proxy,
 * and then only up to the first untrusted hop from the right (the leftmost entries are
 * whatever the client chose to send). A hop that is not an IP address (`unknown`, garbage,
 * a 10 kB string) ends the walk: the address is then the last hop we could trust.
 */
import { BlockList, isIP, isIPv4 } from 'node:net';
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
  let last = peer;
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = hopAddress((hops[i] ?? '').trim());
    if (hop === '') continue;
    if (hop === null) return last;
    if (!trusted.has(hop)) return hop;
    last = hop;
  }
  return last;
}

/** `1.2.3.4`, `1.2.3.4:5678`, `[::1]:80`, `::ffff:1.2.3.4` → the address; '' for empty; null if not an IP. */
function hopAddress(hop: string): string | null {
  if (hop === '') return '';
  let ip = hop;
  if (ip.charCodeAt(0) === 0x5b /* [ */) {
    const close = ip.indexOf(']');
    ip = close === -1 ? ip : ip.slice(1, close);
  } else if (ip.indexOf(':') !== -1 && ip.indexOf(':') === ip.lastIndexOf(':')) {
    ip = ip.slice(0, ip.indexOf(':')); // IPv4 with a port
  }
  ip = plainAddress(ip);
  return isIP(ip) === 0 ? null : ip;
}

/** The X-Forwarded-For to send upstream: the trusted chain plus the peer, or just the peer. */
export function forwardedForUpstream(
  peer: string,
  forwardedFor: string | undefined,
  trusted: TrustedProxies,
): string {
  return forwardedFor !== undefined && trusted.has(peer) ? `${forwardedFor}, ${peer}` : peer;
}

/** What `appendForwarded` needs from the client's request headers. */
export type ForwardedFrom = {
  readonly host: string | undefined;
  readonly forwardedFor: string | undefined;
  readonly forwardedProto: string | undefined;
  readonly forwardedHost: string | undefined;
};

/**
 * Appends the gateway's X-Request-Id and X-Forwarded-For/-Proto/-Host to the upstream headers.
 * Client-sent X-Forwarded-* are believed only from a trusted proxy; X-Forwarded-Host is left out
 * when there is no host to report (HTTP/1.0 without Host).
 */
export function appendForwarded(
  headers: string[],
  requestId: string,
  peer: string,
  sent: ForwardedFrom,
  trusted: TrustedProxies,
): void {
  const peerTrusted = trusted.has(peer);
  headers.push(
    'x-request-id',
    requestId,
    'x-forwarded-for',
    forwardedForUpstream(peer, sent.forwardedFor, trusted),
    'x-forwarded-proto',
    peerTrusted && sent.forwardedProto !== undefined ? sent.forwardedProto : 'http',
  );
  const host = peerTrusted && sent.forwardedHost !== undefined ? sent.forwardedHost : sent.host;
  if (host !== undefined && host !== '') headers.push('x-forwarded-host', host);
}
