/**
 * The request target, normalised once. Routing, every later check and the upstream all see the
 * same path, so nothing that the upstream could parse differently (encoded slashes, dot segments,
 * backslashes, double encoding) gets through.
 *
 * - only origin-form (`/path?query`); absolute-form and `*` are refused;
 * - percent-encoded unreserved characters are decoded (`%7E` → `~`, `%2e` → `.`), other escapes
 *   are kept with upper-case hex;
 * - `%2F`, `%5C` (encoded `/` and `\`), encoded control characters (`%00`-`%1F`, `%7F`), a raw
 *   `\`, and `%25XX` (double encoding, also when the `XX` was itself encoded) are refused;
 * - escapes that are not valid UTF-8 (overlong forms such as `%C0%AE`, surrogates) are refused;
 * - `.` and `..` segments are resolved and `//` collapsed; `..` above the root is refused;
 * - a raw `;` is refused: servlet containers (Tomcat, Jetty, Undertow) cut path parameters out
 *   before routing, so `/admin;x/secret` or `/public/..;/admin` would route one way here and
 *   another way there; an encoded `%3B` is plain data to them and is kept (but not after a dot
 *   segment: `..%3B` is refused too);
 * - characters that are not valid in a path but that clients send anyway (`"<>^\`{|}`) are encoded.
 */

export type RequestTarget = { ok: true; path: string; query: string } | { ok: false; reason: string };

// 1 = allowed as is in a normalised path, 2 = encode, 0 = refuse
const CHAR_CLASS = new Uint8Array(128);
for (let c = 0x21; c < 0x7f; c++) CHAR_CLASS[c] = 1;
for (const ch of '"<>^`{|}') CHAR_CLASS[ch.charCodeAt(0)] = 2;
CHAR_CLASS['\\'.charCodeAt(0)] = 0;
CHAR_CLASS['#'.charCodeAt(0)] = 0;
CHAR_CLASS[';'.charCodeAt(0)] = 0;

const PERCENT = 0x25;
const SLASH = 0x2f;
const DOT = 0x2e;
const SEMICOLON = 0x3b;

const isHex = (c: number) => (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
const hexValue = (c: number) => (c <= 0x39 ? c - 0x30 : (c | 0x20) - 0x57);
const isUnreserved = (c: number) =>
  (c >= 0x41 && c <= 0x5a) ||
  (c >= 0x61 && c <= 0x7a) ||
  (c >= 0x30 && c <= 0x39) ||
  c === 0x2d ||
  c === DOT ||
  c === 0x5f ||
  c === 0x7e;

const refuse = (reason: string): RequestTarget => ({ ok: false, reason });

export function parseRequestTarget(url: string): RequestTarget {
  if (url.charCodeAt(0) !== SLASH) {
    return refuse(
      url === '*' ? 'asterisk-form request target' : 'request target must be a path (origin-form)',
    );
  }
  const q = url.indexOf('?');
  const rawPath = q === -1 ? url : url.slice(0, q);
  const query = q === -1 ? '' : url.slice(q + 1);
  for (let i = 0; i < query.length; i++) {
    const c = query.charCodeAt(i);
    if (c <= 0x20 || c >= 0x7f || c === 0x23) return refuse('invalid character in query');
  }
  // Fast path: nothing to decode, no dot or empty segment, only plain characters.
  let simple = true;
  for (let i = 0; i < rawPath.length; i++) {
    const c = rawPath.charCodeAt(i);
    if (c >= 0x80 || CHAR_CLASS[c] !== 1 || c === PERCENT) {
      simple = false;
      break;
    }
    if (c === SLASH && i > 0 && (rawPath.charCodeAt(i - 1) === SLASH || rawPath.charCodeAt(i - 1) === DOT)) {
      simple = false; // "//", "./", "../": segments to collapse or resolve
      break;
    }
  }
  if (simple && rawPath.charCodeAt(rawPath.length - 1) === DOT) simple = false;
  if (simple) return { ok: true, path: rawPath, query };
  return normalise(rawPath, query);
}

function normalise(rawPath: string, query: string): RequestTarget {
  // Pass 1: characters and escapes, into `decoded` (still with '/' as the only separator).
  let decoded = '';
  let nonAscii = false;
  let encodedPercent = false;
  for (let i = 0; i < rawPath.length; i++) {
    const c = rawPath.charCodeAt(i);
    if (c === PERCENT) {
      const h = rawPath.charCodeAt(i + 1);
      const l = rawPath.charCodeAt(i + 2);
      if (!isHex(h) || !isHex(l)) return refuse('invalid percent-encoding in path');
      const byte = hexValue(h) * 16 + hexValue(l);
      if (byte === SLASH || byte === 0x5c) return refuse('encoded "/" or "\\" in path');
      if (byte < 0x20 || byte === 0x7f) return refuse('encoded control character in path');
      if (byte >= 0x80) nonAscii = true;
      else if (byte === PERCENT) encodedPercent = true;
      decoded += isUnreserved(byte)
        ? String.fromCharCode(byte)
        : `%${rawPath[i + 1]}${rawPath[i + 2]}`.toUpperCase();
      i += 2;
      continue;
    }
    const cls = c < 0x80 ? CHAR_CLASS[c] : 0;
    if (cls === 1) decoded += rawPath[i];
    else if (cls === 2) decoded += `%${c.toString(16).toUpperCase()}`;
    else return refuse(refusedCharacter(c));
  }
  // `%25` followed by two hex digits, as sent (`%252e`) or once decoded (`%25%32%65` → `%252e`),
  // decodes to another escape: the upstream could see a `.`, `/` or `\` we never checked.
  if (encodedPercent && /%25[0-9A-Fa-f]{2}/.test(decoded)) return refuse('double percent-encoding in path');
  if (nonAscii) {
    try {
      decodeURIComponent(decoded); // throws on overlong forms, surrogates, truncated sequences
    } catch {
      return refuse('invalid UTF-8 in path');
    }
  }
  // Pass 2: segments (RFC 3986 remove_dot_segments, and "//" collapsed).
  const input = decoded.split('/');
  const out: string[] = [];
  const last = input.length - 1;
  for (let i = 1; i <= last; i++) {
    const seg = input[i] ?? '';
    if (seg === '..') {
      if (out.length === 0) return refuse('path escapes the root');
      out.pop();
      if (i === last) out.push('');
    } else if (seg === '.' || seg === '') {
      if (i === last) out.push('');
    } else if (seg.charCodeAt(0) === DOT && isDotSegmentWithParams(seg)) {
      return refuse('dot segment with an encoded ";" in path');
    } else {
      out.push(seg);
    }
  }
  // "/a/" → ['a', ''] → "/a/"; "/" → [''] → "/"
  return { ok: true, path: '/' + out.join('/'), query };
}

function refusedCharacter(c: number): string {
  if (c === 0x5c) return 'backslash in path';
  if (c === SEMICOLON) return '";" (path parameters) in path';
  return 'invalid character in path';
}

/** `.%3B`, `..%3Bx`: a dot segment followed by an encoded `;`. */
function isDotSegmentWithParams(seg: string): boolean {
  return seg.startsWith('%3B', seg.charCodeAt(1) === DOT ? 2 : 1);
}
