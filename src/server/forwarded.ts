/**
 * RFC 7239 `Forwarded`: the gateway's own element (`for=`, `proto=`, `host=`), and the check a
 * trusted proxy's chain must pass before the gateway extends it.
 *
 * A chain is extended only when it parses: one unbalanced quote in it (`for="1.2.3.4`) would
 * make an upstream read the gateway's element as part of the client's quoted string, so a
 * malformed chain is dropped and the gateway's element sent alone.
 */

/** RFC 9110 tchar: ALPHA DIGIT ! # $ % & ' * + - . ^ _ ` | ~ */
const TCHAR = new Uint8Array(128);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;

const isTchar = (c: number) => c < 128 && TCHAR[c] === 1;
const isOws = (c: number) => c === 0x20 || c === 0x09;

/** `value` as a token when it is one, else as a quoted-string. */
export function tokenOrQuoted(value: string): string {
  let token = value !== '';
  let escape = false;
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (!isTchar(c)) token = false;
    if (c === 0x22 || c === 0x5c) escape = true;
  }
  if (token) return value;
  return `"${escape ? value.replace(/["\\]/g, '\\$&') : value}"`;
}

/**
 * The gateway's element: `for=` the peer (an IPv6 address quoted and bracketed, `unknown` when
 * the connection has no address any more), `proto=http` (`https` over TLS), `host=` the `Host` it received (left
 * out when there was none).
 */
export function forwardedElement(peer: string, host: string | undefined, tls = false): string {
  const node = peer === '' ? 'unknown' : peer.includes(':') ? `"[${peer}]"` : peer;
  const proto = tls ? 'https' : 'http';
  return host === undefined || host === ''
    ? `for=${node};proto=${proto}`
    : `for=${node};proto=${proto};host=${tokenOrQuoted(host)}`;
}

/**
 * `Forwarded = 1#forwarded-element`, `forwarded-element = [ pair ] *( ";" [ pair ] )`,
 * `pair = token "=" ( token / quoted-string )`. Whitespace is allowed around `,` (the list
 * rule) and, leniently, around `;`; empty elements and pairs are allowed (RFC 9110 §5.6.1).
 */
export function isValidForwarded(value: string): boolean {
  const n = value.length;
  let i = 0;
  for (;;) {
    while (i < n && isOws(value.charCodeAt(i))) i++;
    // one element: pairs separated by ';'
    for (;;) {
      if (i < n && isTchar(value.charCodeAt(i))) {
        while (i < n && isTchar(value.charCodeAt(i))) i++;
        if (value.charCodeAt(i) !== 0x3d /* = */) return false;
        i++;
        if (value.charCodeAt(i) === 0x22 /* " */) {
          i = endOfQuoted(value, i + 1);
          if (i === -1) return false;
        } else {
          const start = i;
          while (i < n && isTchar(value.charCodeAt(i))) i++;
          if (i === start) return false;
        }
      }
      while (i < n && isOws(value.charCodeAt(i))) i++;
      if (value.charCodeAt(i) !== 0x3b /* ; */) break;
      i++;
      while (i < n && isOws(value.charCodeAt(i))) i++;
    }
    if (i === n) return true;
    if (value.charCodeAt(i) !== 0x2c /* , */) return false;
    i++;
  }
}

/** Index after the closing quote of a quoted-string whose content starts at `i`; -1 if unterminated or invalid. */
function endOfQuoted(value: string, i: number): number {
  const n = value.length;
  while (i < n) {
    const c = value.charCodeAt(i);
    if (c === 0x22) return i + 1;
    if (c === 0x5c /* \ */) {
      i++;
      if (i === n) return -1;
      const e = value.charCodeAt(i);
      if (e !== 0x09 && (e < 0x20 || e === 0x7f)) return -1;
    } else if (c !== 0x09 && (c < 0x20 || c === 0x7f)) {
      return -1;
    }
    i++;
  }
  return -1;
}
