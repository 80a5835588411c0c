/** Route path patterns: literal segments, `*` (exactly one segment), `**` (the rest, maybe empty). */

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
    } else if (/[?#\\%\s]/.test(part)) {
      return {
        ok: false,
        reason: `"${part}": "?", "#", "\\\\", "%" and spaces are not allowed in a pattern`,
      };
    } else {
      segments.push({ kind: 'literal', value: part });
    }
  }
  return { ok: true, segments };
}
