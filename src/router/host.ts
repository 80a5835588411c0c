/** `Api.Example.com:8080` → `api.example.com`; `[::1]:80` → `[::1]`; a trailing dot is dropped. */
export function normaliseHost(host: string | undefined): string {
  if (!host) return '';
  let end = host.length;
  if (host.charCodeAt(0) === 0x5b /* [ */) {
    const close = host.indexOf(']');
    end = close === -1 ? end : close + 1;
  } else {
    const colon = host.lastIndexOf(':');
    if (colon !== -1) end = colon;
  }
  if (host.charCodeAt(end - 1) === 0x2e /* . */) end--;
  const name = end === host.length ? host : host.slice(0, end);
  // fast path: already lower case (the common case) avoids an allocation
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) return name.toLowerCase();
  }
  return name;
}

// Characters of a host name or IPv4 address (RFC 3986 unreserved), and of an IP literal.
const NAME = /^[A-Za-z0-9._~-]*$/;
const IP_LITERAL = /^\[[0-9A-Fa-f:.]+\]$/;
const DIGITS = /^\d{1,5}$/;

/** A port after `:`: empty (RFC 3986 allows it: the scheme's default), or 1 to 65535 in digits. */
function isValidPort(port: string): boolean {
  if (port === '') return true;
  if (!DIGITS.test(port)) return false;
  const n = Number(port);
  return n >= 1 && n <= 65535;
}

/**
 * A `Host` header value as RFC 9112 §3.2 allows it: `name[:port]` or `[ip-literal][:port]`,
 * empty allowed, the port 1 to 65535 (or empty). Anything else (spaces, `/`, `@`, `%`, several
 * colons, port 0 or 99999) is a 400: an upstream
 * building links or virtual-host decisions from it could read it differently.
 */
export function isValidHost(value: string): boolean {
  let end = value.length;
  if (value.charCodeAt(0) === 0x5b /* [ */) {
    const close = value.indexOf(']');
    if (close === -1 || !IP_LITERAL.test(value.slice(0, close + 1))) return false;
    end = close + 1;
    if (end === value.length) return true;
    return value.charCodeAt(end) === 0x3a /* : */ && isValidPort(value.slice(end + 1));
  }
  const colon = value.indexOf(':');
  if (colon !== -1) end = colon;
  return (
    NAME.test(colon === -1 ? value : value.slice(0, end)) &&
    (colon === -1 || isValidPort(value.slice(end + 1)))
  );
}
