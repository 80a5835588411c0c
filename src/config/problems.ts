/** A config problem, reported as `file:line: path.to.field: message`. */
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

export function formatProblem(p: ConfigProblem): string {
  return `${p.file}:${p.line}: ${p.path}: ${p.message}`;
}

export class ConfigError extends Error {
  readonly code = 'GATEHOUSE_CONFIG_INVALID';
  constructor(readonly problems: readonly ConfigProblem[]) {
    super(`invalid config:\n${problems.map(formatProblem).join('\n')}`);
    this.name = 'ConfigError';
  }
}
