/**
 * The client's address, and the forwarding headers the upstream gets (X-Forwarded-*,
 * X-Real-IP, Forwarded). X-Forwarded-For is believed only when the peer is a trusted proxy,
 * and then only up to the first untrusted hop from the right (the leftmost entries are
 * whatever the client chose to send). A hop that is not an IP address (`unknown`, garbage,
 * a 10 kB string) ends the walk: the address is then the last hop we could trust.
 */
import { BlockList, isIP, isIPv4 } from 'node:net';
import { addAddressOrCidr } from '../config/fields.js';
import { forwardedElement, isValidForwarded } from './forwarded.js';

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

/** What `appendForwarded` needs from the client's request headers. */
export type ForwardedFrom = {
  readonly host: string | undefined;
  readonly forwardedFor: string | undefined;
  readonly forwardedProto: string | undefined;
  readonly forwardedHost: string | undefined;
  readonly forwarded: string | undefined;
  readonly forwardedPrefix: string | undefined;
};

/**
 * Appends the gateway's X-Request-Id, X-Forwarded-For/-Proto/-Host, X-Real-IP, Forwarded and,
 * when there is one, X-Forwarded-Prefix to the upstream headers. What the client sent under
 * these names is believed only from a trusted proxy (`peerTrusted`):
 * - X-Forwarded-For and Forwarded: the proxy's chain, extended with the peer (a Forwarded
 *   chain that does not parse is dropped; forwarded.ts);
 * - X-Forwarded-Proto and -Host: the proxy's values, else `http` or `https` (the client's
 *   connection is TLS) and the `Host` (left out when
 *   there is no host to report: HTTP/1.0 without Host);
 * - X-Real-IP: always the client address the gateway settled on (`clientIp`);
 * - X-Forwarded-Prefix: the proxy's prefix, then the one the route strips (`stripped`).
 */
export function appendForwarded(
  headers: string[],
  requestId: string,
  peer: string,
  peerTrusted: boolean,
  clientIp: string,
  sent: ForwardedFrom,
  /** the path prefix the route strips ('' for none) */
  stripped: string,
  /** the client's connection is TLS (X-Forwarded-Proto and Forwarded say https) */
  tls = false,
): void {
  headers.push(
    'x-request-id',
    requestId,
    'x-forwarded-for',
    peerTrusted && sent.forwardedFor !== undefined ? `${sent.forwardedFor}, ${peer}` : peer,
    'x-forwarded-proto',
    peerTrusted && sent.forwardedProto !== undefined ? sent.forwardedProto : tls ? 'https' : 'http',
  );
  const host = peerTrusted && sent.forwardedHost !== undefined ? sent.forwardedHost : sent.host;
  if (host !== undefined && host !== '') headers.push('x-forwarded-host', host);
  if (clientIp !== '') headers.push('x-real-ip', clientIp);
  const own = forwardedElement(peer, sent.host, tls);
  const chain = peerTrusted ? sent.forwarded : undefined;
  headers.push(
    'forwarded',
    chain !== undefined && chain.trim() !== '' && isValidForwarded(chain) ? `${chain}, ${own}` : own,
  );
  const prefix = peerTrusted ? sent.forwardedPrefix : undefined;
  if (stripped !== '') {
    headers.push(
      'x-forwarded-prefix',
      prefix === undefined ? stripped : withoutTrailingSlash(prefix) + stripped,
    );
  } else if (prefix !== undefined) {
    headers.push('x-forwarded-prefix', prefix);
  }
}

const withoutTrailingSlash = (p: string) => (p.endsWith('/') ? p.slice(0, -1) : p);
