/**
 * Loads a config file: YAML (positions kept) → ${ENV} interpolation → schema validation →
 * defaults → cross-field checks → a new, deeply frozen `GatewayConfig`. Every problem found
 * is reported at once with its file and line.
 */
import { readFile } from 'node:fs/promises';
import { isScalar, LineCounter, parse as parseYaml, parseDocument, visit, type Document } from 'yaml';
import { Value } from '@sinclair/typebox/value';
import { checkConfig } from './checks.js';
import { deepFreeze, withDefaults } from './defaults.js';
import { expand, extractTokens, hasPlaceholder } from './interpolate.js';
import { installErrorMessages } from './messages.js';
import { ConfigError, formatPath, type ConfigProblem, type PathSegment } from './problems.js';
import { ConfigSchema, type GatewayConfig } from './schema.js';

export type LoadResult = { ok: true; config: GatewayConfig } | { ok: false; problems: ConfigProblem[] };

export type LoadOptions = { env?: NodeJS.ProcessEnv };

/** Reads and loads a file; I/O errors become a problem at line 0. */
export async function loadConfigFile(file: string, options: LoadOptions = {}): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const reason =
      (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : (err as Error).message;
    return { ok: false, problems: [{ file, line: 0, path: '(file)', message: reason }] };
  }
  return loadConfigText(text, file, options);
}

/** Like loadConfigFile, but throws a ConfigError listing every problem. */
export async function readConfig(file: string, options: LoadOptions = {}): Promise<GatewayConfig> {
  const result = await loadConfigFile(file, options);
  if (!result.ok) throw new ConfigError(result.problems);
  return result.config;
}

export function loadConfigText(text: string, file: string, options: LoadOptions = {}): LoadResult {
  installErrorMessages();
  const env = options.env ?? process.env;
  const lineCounter = new LineCounter();
  const extracted = extractTokens(text);
  const doc = parseDocument(extracted.text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const lineOf = (offset: number) => lineCounter.linePos(offset).line;
  const problems: ConfigProblem[] = [];

  for (const err of [...doc.errors, ...doc.warnings]) {
    problems.push({
      file,
      line: lineOf(err.pos[0]),
      path: '(yaml)',
      message: err.message.split('\n')[0] ?? 'invalid YAML',
    });
  }
  if (doc.errors.length > 0) return { ok: false, problems };

  interpolateDocument(doc, extracted.tokens, env, (path, offset, message) =>
    problems.push({ file, line: lineOf(offset), path: formatPath(path), message }),
  );

  let raw: unknown = doc.toJS({ maxAliasCount: 100 }) ?? {};
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    problems.push({ file, line: 1, path: '(root)', message: 'the config must be a YAML mapping' });
    return { ok: false, problems };
  }
  raw = applyEnvOverrides(raw as Record<string, unknown>, env);

  const locate = (path: readonly PathSegment[]): number => {
    for (let n = path.length; n > 0; n--) {
      const node = doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined;
      if (node?.range) return lineOf(node.range[0]);
    }
    return 1;
  };

  const defaulted = withDefaults(ConfigSchema, raw);
  const seen = new Set<string>();
  for (const error of Value.Errors(ConfigSchema, defaulted)) {
    const path = pointerToPath(error.path);
    const key = formatPath(path);
    if (seen.has(key)) continue; // one problem per field: the first is the informative one
    seen.add(key);
    problems.push({ file, line: locate(path), path: key, message: error.message });
  }
  if (problems.length > 0) return { ok: false, problems: sortProblems(problems) };

  const config = Value.Decode(ConfigSchema, defaulted);
  for (const p of checkConfig(config))
    problems.push({ file, line: locate(p.path), path: formatPath(p.path), message: p.message });
  if (problems.length > 0) return { ok: false, problems: sortProblems(problems) };
  return { ok: true, config: deepFreeze(config) };
}

function interpolateDocument(
  doc: Document,
  tokens: Parameters<typeof expand>[1],
  env: NodeJS.ProcessEnv,
  report: (path: PathSegment[], offset: number, message: string) => void,
): void {
  visit(doc, {
    Scalar(key, node, ancestors) {
      if (typeof node.value !== 'string' || !hasPlaceholder(node.value)) return;
      const result = expand(node.value, tokens, env);
      const offset = node.range?.[0] ?? 0;
      const path = pathOf(ancestors, node);
      for (const name of result.missing)
        report(path, offset, `environment variable ${name} is not set (use \${${name}:-default})`);
      for (const bad of result.invalid) report(path, offset, `invalid interpolation "${bad}"`);
      node.value = node.type === 'PLAIN' && key !== 'key' ? retype(result.value) : result.value;
    },
  });
}

/** A plain (unquoted) scalar that became `8080` or `true` after interpolation is typed as YAML would. */
function retype(value: string): unknown {
  try {
    const v: unknown = parseYaml(value);
    return typeof v === 'number' || typeof v === 'boolean' ? v : value;
  } catch {
    return value;
  }
}

function pathOf(ancestors: readonly unknown[], node: unknown): PathSegment[] {
  const path: PathSegment[] = [];
  const chain = [...ancestors, node];
  for (let i = 1; i < chain.length; i++) {
    const parent = chain[i - 1] as { items?: unknown[] };
    const child = chain[i];
    if (!Array.isArray(parent.items)) continue;
    const idx = parent.items.indexOf(child);
    if (idx >= 0 && !(isScalar(child) || (child as { key?: unknown }).key !== undefined)) path.push(idx);
    else if (idx >= 0 && isScalar(child)) path.push(idx);
    const pair = child as { key?: unknown };
    if (pair.key !== undefined && isScalar(pair.key)) path.push(String(pair.key.value));
  }
  return path;
}

function applyEnvOverrides(raw: Record<string, unknown>, env: NodeJS.ProcessEnv): Record<string, unknown> {
  const out = { ...raw };
  if (env.PORT !== undefined && env.PORT !== '') {
    const listen = typeof out.listen === 'object' && out.listen !== null ? out.listen : {};
    out.listen = { ...listen, port: /^\d+$/.test(env.PORT) ? Number(env.PORT) : env.PORT };
  }
  if (env.LOG_LEVEL) {
    const logging = typeof out.logging === 'object' && out.logging !== null ? out.logging : {};
    out.logging = { ...logging, level: env.LOG_LEVEL };
  }
  return out;
}

function pointerToPath(pointer: string): PathSegment[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

const sortProblems = (problems: ConfigProblem[]) => problems.sort((a, b) => a.line - b.line);
