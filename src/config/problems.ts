/** A config problem, reported as `file:line: path.to.field: message` (line 1-based; 0 = the whole file). */
export type ConfigProblem = { file: string; line: number; path: string; message: string };

export type PathSegment = string | number;

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
 * `file:line: path: message`. Line 0 means the problem concerns the file as a whole (it cannot be
 * read): printed as `file: message`.
 */
export function formatProblem(p: ConfigProblem): string {
  if (p.line === 0) return `${p.file}: ${p.message}`;
  return `${p.file}:${p.line}: ${p.path}: ${p.message}`;
}

export class ConfigError extends Error {
  readonly code = 'GATEHOUSE_CONFIG_INVALID';
  constructor(readonly problems: readonly ConfigProblem[]) {
    super(`invalid config:\n${problems.map(formatProblem).join('\n')}`);
    this.name = 'ConfigError';
  }
}
