import type { PathSegment } from './fields.js';

export type { PathSegment };

/** Where in the file: line and column, both from 1 (a column counts UTF-16 code units). */
export type Position = { line: number; column: number };

/**
 * A config problem, reported as `file:line:column: path.to.field: message`. Line 0 (column 0)
 * means the whole file.
 */
export type ConfigProblem = Position & { file: string; path: string; message: string };

/** `['routes', 0, 'match', 'path']` → `routes[0].match.path` */
export function formatPath(path: readonly PathSegment[]): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out === '' ? seg : `.${seg}`;
  }
  return out || '(root)';
}

/**
 * `file:line:column: path: message`, as compilers print it (editors and terminals jump to it).
 * Line 0 means the problem concerns the file as a whole (it cannot be read): printed as
 * `file: message`.
 */
export function formatProblem(p: ConfigProblem): string {
  if (p.line === 0) return `${p.file}: ${p.message}`;
  return `${p.file}:${p.line}:${p.column}: ${p.path}: ${p.message}`;
}

export class ConfigError extends Error {
  readonly code = 'GATEHOUSE_CONFIG_INVALID';
  constructor(readonly problems: readonly ConfigProblem[]) {
    super(`invalid config:\n${problems.map(formatProblem).join('\n')}`);
    this.name = 'ConfigError';
  }
}
