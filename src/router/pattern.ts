/**
 * Route path patterns: literal segments, `*` (exactly one non-empty segment), `**` (the rest of
 * the path: zero or more segments, only as the last segment).
 *
 * - `/` is the root path only. `/a` and `/a/` are different patterns: `/a` matches the path `/a`
 *   and not `/a/`, `/a/` matches `/a/` only (its last segment is the empty one). `/a/**` matches
 *   `/a`, `/a/` and everything below.
 * - Literals are compared, case-sensitively, with the normalised request path
 *   (request-target.ts), so a literal must be written the way that normalisation produces it:
 *   characters outside printable ASCII and `"<>^`{|}` and spaces percent-encoded with upper-case
 *   hex (`/caf%C3%A9`), unreserved characters not encoded (`~`, not `%7E`). A pattern that no
 *   request could ever match is refused here rather than accepted and silently dead.
 */
import { parseRequestTarget } from './request-target.js';

export type Segment = { kind: 'literal'; value: string } | { kind: 'star' } | { kind: 'globstar' };

export type ParsedPattern = { ok: true; segments: Segment[] } | { ok: false; reason: string };

/** Parses a pattern such as `/api/orders/*` or `/static/**`. */
export function parsePattern(pattern: string): ParsedPattern {
  if (!pattern.startsWith('/')) return { ok: false, reason: 'must start with "/"' };
  if (pattern === '/') return { ok: true, segments: [{ kind: 'literal', value: '' }] };
  const parts = pattern.slice(1).split('/');
  const segments: Segment[] = [];
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i] ?? '';
    const last = i === parts.length - 1;
    if (part === '**') {
      if (!last) return { ok: false, reason: '"**" may only be the last segment' };
      segments.push({ kind: 'globstar' });
    } else if (part === '*') {
      segments.push({ kind: 'star' });
    } else if (part.includes('*')) {
      return { ok: false, reason: `"${part}": "*" must be a whole segment` };
    } else if (part === '' && !last) {
      return { ok: false, reason: 'empty segment ("//")' };
    } else if (part === '.' || part === '..') {
      return { ok: false, reason: 'dot segments are not allowed' };
    } else {
      const problem = literalProblem(part);
      if (problem) return { ok: false, reason: problem };
      segments.push({ kind: 'literal', value: part });
    }
  }
  return { ok: true, segments };
}

const HEX = /^[0-9A-Fa-f]{2}$/;
const UNRESERVED = /^[A-Za-z0-9\-._~]$/;
/** Characters the request-target normaliser passes through as they are (besides `%`). */
const PLAIN = /^[!$&'()*+,\-.0-9:;=@A-Z[\]_a-z~]$/;

/** Why a literal segment could never equal a normalised request path segment, or null. */
function literalProblem(part: string): string | null {
  if (/[?#]/.test(part)) return `"${part}": a pattern matches the path only, "?" and "#" are not allowed`;
  if (part.includes('\\')) return `"${part}": "\\" is not allowed (requests containing it are refused)`;
  for (let i = 0; i < part.length; i++) {
    const ch = part[i] as string;
    if (ch === '%') {
      const hex = part.slice(i + 1, i + 3);
      if (!HEX.test(hex)) return `"${part}": invalid percent-encoding`;
      const byte = Number.parseInt(hex, 16);
      const decoded = String.fromCharCode(byte);
      const doubleEncoded = byte === 0x25 && HEX.test(part.slice(i + 3, i + 5));
      if (byte === 0x2f || byte === 0x5c || byte === 0 || doubleEncoded) {
        const what = doubleEncoded ? part.slice(i, i + 5) : `%${hex}`;
        return `"${part}": "${what}" is not allowed (requests containing it are refused)`;
      }
      if (UNRESERVED.test(decoded)) return `"${part}": write "${decoded}" instead of "%${hex}"`;
      if (hex !== hex.toUpperCase()) return `"${part}": write "%${hex.toUpperCase()}" in upper case`;
      i += 2;
    } else if (!PLAIN.test(ch)) {
      return `"${part}": write it percent-encoded, as requests carry it: "${canonical(part)}"`;
    }
  }
  // Last word to the request normaliser: a literal it would refuse or rewrite can never match.
  const asRequest = parseRequestTarget('/' + part);
  if (!asRequest.ok) return `"${part}": requests with this segment are refused (${asRequest.reason})`;
  if (asRequest.path !== '/' + part)
    return `"${part}": requests arrive normalised as "${asRequest.path.slice(1)}"`;
  return null;
}

/** `café` → `caf%C3%A9`, `a b` → `a%20b`: the segment as a normalised request path has it. */
function canonical(part: string): string {
  let out = '';
  for (const ch of part) {
    if (ch === '%' || PLAIN.test(ch)) out += ch;
    else for (const b of Buffer.from(ch, 'utf8')) out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
