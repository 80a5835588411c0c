/**
 * Loads a config file: YAML (positions kept) → ${ENV} interpolation → environment overrides
 * (PORT, LOG_LEVEL) → defaults → schema validation → cross-field checks → a new, deeply frozen
 * `GatewayConfig`. Every problem found is reported at once with its file, line and column.
 *
 * Cross-field checks (checks.ts) run even when the schema found problems: each check looks only
 * at the parts of the file that satisfied the schema (a route with a bad field is skipped, the
 * others are still checked), so one run of `gatehouse validate` lists everything.
 *
 * A problem's position is that of the key (or list item) at its path; when that is not in the
 * file (a missing key, a default), of the nearest enclosing key that is.
 */
import { readFile } from 'node:fs/promises';
import {
  isMap,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  parse as parseYaml,
  parseDocument,
  visit,
  type Document,
} from 'yaml';
import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { CHECKS, FILE_CHECKS } from './checks.js';
import { deepFreeze, withDefaults } from './defaults.js';
import type { ConfigParts, Report } from './fields.js';
import { expand, extractTokens, hasPlaceholder } from './interpolate.js';
import { installErrorMessages } from './messages.js';
import { configParts } from './parts.js';
import { ConfigError, formatPath, type ConfigProblem, type PathSegment, type Position } from './problems.js';
import { ConfigSchema, type GatewayConfig } from './schema.js';

export type LoadResult = { ok: true; config: GatewayConfig } | { ok: false; problems: ConfigProblem[] };

export type LoadOptions = { env?: NodeJS.ProcessEnv };

/**
 * Reads and loads a file; I/O errors become a problem at line 0 (printed as `file: message`).
 * Unlike loadConfigText, it also reads the files the config names (JWT public keys): one that is
 * missing or not a public key is a problem of its field.
 */
export async function loadConfigFile(file: string, options: LoadOptions = {}): Promise<LoadResult> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason =
      code === 'ENOENT'
        ? 'cannot read the config file: no such file'
        : code === 'EISDIR'
          ? 'cannot read the config file: it is a directory'
          : `cannot read the config file: ${(err as Error).message}`;
    return { ok: false, problems: [{ file, line: 0, column: 0, path: '(file)', message: reason }] };
  }
  const draft = draftConfig(text, file, options);
  const named: ConfigProblem[] = [];
  const { parts } = draft;
  if (parts) {
    const report: Report = (path, message) =>
      named.push({ file, ...draft.locate(path), path: formatPath(path), message });
    await Promise.all(FILE_CHECKS.map((check) => check(parts, report)));
  }
  return finish(draft, named);
}

/** Like loadConfigFile, but throws a ConfigError listing every problem. */
export async function readConfig(file: string, options: LoadOptions = {}): Promise<GatewayConfig> {
  const result = await loadConfigFile(file, options);
  if (!result.ok) throw new ConfigError(result.problems);
  return result.config;
}

/**
 * Loads config text. `file` only labels the problems. `options.env` (default `process.env`)
 * supplies `${VAR}` values and the PORT / LOG_LEVEL overrides. The text is not changed; the
 * result shares nothing with any input. No other file is read (see loadConfigFile).
 */
export function loadConfigText(text: string, file: string, options: LoadOptions = {}): LoadResult {
  return finish(draftConfig(text, file, options), []);
}

/**
 * What the text says, checked: the problems found, and (when the text is a mapping) the defaulted
 * config, its parts as the checks see them, and where a path is in the file.
 */
type Draft = {
  problems: ConfigProblem[];
  defaulted?: Json;
  parts?: ConfigParts;
  locate: (path: readonly PathSegment[]) => Position;
};

function finish(draft: Draft, more: ConfigProblem[]): LoadResult {
  const problems = [...draft.problems, ...more];
  if (problems.length > 0 || draft.defaulted === undefined)
    return { ok: false, problems: sortProblems(problems) };
  return { ok: true, config: deepFreeze(Value.Decode(ConfigSchema, draft.defaulted)) };
}

function draftConfig(text: string, file: string, options: LoadOptions): Draft {
  installErrorMessages();
  const env = options.env ?? process.env;
  const extracted = extractTokens(text);
  const doc = parseDocument(extracted.text, { uniqueKeys: true, prettyErrors: false });
  // Positions are counted in the text as written, where a `${VAR}` is not as long as the
  // placeholder the parser saw (lines are the same: neither holds a newline).
  const lines = new LineCounter();
  lines.addNewLine(0);
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) lines.addNewLine(i + 1);
  const positionOf = (offset: number): Position => {
    const { line, col } = lines.linePos(extracted.originalOffset(offset));
    return { line, column: col };
  };
  const problems: ConfigProblem[] = [];
  const atStart = () => ({ line: 1, column: 1 });

  // YAML warnings (an unknown tag such as `!foo`) are problems too: the file would not mean what
  // it says. An error found at the end of the input (an unclosed `{`) goes at the end of the
  // last line.
  const written = text.trimEnd().split('\n');
  const lastLine = Math.max(1, written.length);
  for (const err of [...doc.errors, ...doc.warnings]) {
    const at = positionOf(err.pos[0]);
    problems.push({
      file,
      ...(at.line > lastLine ? { line: lastLine, column: (written[lastLine - 1] ?? '').length + 1 } : at),
      path: '(yaml)',
      message: err.message.split('\n')[0] ?? 'invalid YAML',
    });
  }
  if (doc.errors.length > 0) return { problems, locate: atStart };

  // A field whose interpolation failed gets no schema problem on top ("" is not a port...).
  const reported = new Set<string>();
  interpolateDocument(doc, extracted.tokens, env, (path, offset, message) => {
    reported.add(formatPath(path));
    problems.push({ file, ...positionOf(offset), path: formatPath(path), message });
  });

  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 }) ?? {};
  } catch (err) {
    // yaml throws when aliases expand too far ("billion laughs")
    problems.push({ file, ...atStart(), path: '(yaml)', message: (err as Error).message });
    return { problems, locate: atStart };
  }
  if (!isPlainObject(raw)) {
    problems.push({
      file,
      ...positionOf(doc.contents?.range?.[0] ?? 0),
      path: '(root)',
      message: 'must be a mapping of settings (key: value), such as "listen: { port: 8080 }"',
    });
    return { problems, locate: atStart };
  }
  const { value: overridden, notes } = applyEnvOverrides(raw, env);
  const locate = (path: readonly PathSegment[]) => positionOf(offsetOfPath(doc, path));

  const defaulted = withDefaults(ConfigSchema, overridden) as Record<string, unknown>;
  for (const error of Value.Errors(ConfigSchema, defaulted)) {
    const path = pointerToPath(error.path, defaulted);
    const key = formatPath(path);
    if (reported.has(key)) continue; // one problem per field: the first is the informative one
    reported.add(key);
    const note = notes.get(key);
    problems.push({ file, ...locate(path), path: key, message: error.message + (note ?? '') });
  }

  // TypeBox reports only the first key of a record that fails its pattern (a service's name);
  // report them all.
  for (const [section, schema] of Object.entries(ConfigSchema.properties) as Array<[string, TSchema]>) {
    const names = schema.propertyNames as { pattern?: string; errorMessage?: string } | undefined;
    const entries = defaulted[section];
    if (names?.pattern === undefined || !isPlainObject(entries)) continue;
    const pattern = new RegExp(names.pattern);
    for (const name of Object.keys(entries)) {
      const path = [section, name];
      if (pattern.test(name) || reported.has(formatPath(path))) continue;
      problems.push({
        file,
        ...locate(path),
        path: formatPath(path),
        message: names.errorMessage ?? `must match ${names.pattern}`,
      });
    }
  }

  const parts = configParts(ConfigSchema, defaulted);
  const report: Report = (path, message) => {
    const key = formatPath(path);
    problems.push({ file, ...locate(path), path: key, message: message + (notes.get(key) ?? '') });
  };
  for (const check of CHECKS) check(parts, report);
  return { problems, defaulted, parts, locate };
}

type Json = Record<string, unknown>;
const isPlainObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Where the key (or list item) deepest along `path` that the file contains starts; 0 if none. */
function offsetOfPath(doc: Document, path: readonly PathSegment[]): number {
  let node: unknown = doc.contents;
  let offset = 0;
  for (const seg of path) {
    let range: readonly number[] | null | undefined;
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      range = (pair.key as { range?: readonly number[] | null }).range;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item: unknown = node.items[seg];
      if (item === undefined) break;
      range = (item as { range?: readonly number[] | null }).range;
      node = item;
    } else break;
    if (range?.[0] !== undefined) offset = range[0];
  }
  return offset;
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
      const path = pathOf(ancestors);
      for (const name of result.missing)
        report(
          path,
          offset,
          `environment variable ${name} is not set (use \${${name}:-default} for a default)`,
        );
      for (const bad of result.invalid)
        report(
          path,
          offset,
          `invalid interpolation "${bad}" (use \${VAR}, \${VAR:-default}, or $\${ for "\${")`,
        );
      node.value = node.type === 'PLAIN' && key !== 'key' ? retype(result.value) : result.value;
    },
  });
}

/**
 * A plain (unquoted) scalar that became `8080` or `true` after interpolation is typed as YAML
 * would have typed it had the value been written there: `port: ${PORT:-8080}` is a number, while
 * `port: "${PORT:-8080}"` stays a string. Nothing else is re-parsed (a value that looks like a
 * mapping or `null` stays a string), so a variable cannot inject structure.
 */
function retype(value: string): unknown {
  try {
    const v: unknown = parseYaml(value);
    return typeof v === 'number' || typeof v === 'boolean' ? v : value;
  } catch {
    return value;
  }
}

/** The config path of a node from the visitor's ancestors (pairs give keys, sequences indexes). */
function pathOf(ancestors: readonly unknown[]): PathSegment[] {
  const path: PathSegment[] = [];
  for (let i = 0; i < ancestors.length; i++) {
    const a = ancestors[i];
    if (isPair(a) && isScalar(a.key)) path.push(String(a.key.value));
    else if (isSeq(a)) {
      const child = ancestors[i + 1];
      const idx = child === undefined ? -1 : a.items.indexOf(child as never);
      if (idx >= 0) path.push(idx);
    }
  }
  return path;
}

/**
 * PORT overrides `listen.port` and LOG_LEVEL `logging.level` (when set and not empty). A problem
 * with an overridden value says where the value came from (the file's line is the key's, if the
 * file has one). An override never hides a wrong section: `listen: 5` stays an error.
 */
function applyEnvOverrides(raw: Json, env: NodeJS.ProcessEnv): { value: Json; notes: Map<string, string> } {
  const out = { ...raw };
  const notes = new Map<string, string>();
  const override = (section: string, key: string, value: unknown, variable: string) => {
    const current = out[section];
    if (current !== undefined && current !== null && !isPlainObject(current)) return;
    out[section] = { ...((current ?? {}) as Json), [key]: value };
    notes.set(`${section}.${key}`, ` (the value ${JSON.stringify(value)} comes from ${variable})`);
  };
  if (env.PORT !== undefined && env.PORT !== '') {
    override('listen', 'port', /^\d+$/.test(env.PORT) ? Number(env.PORT) : env.PORT, 'PORT');
  }
  if (env.LOG_LEVEL !== undefined && env.LOG_LEVEL !== '') {
    override('logging', 'level', env.LOG_LEVEL, 'LOG_LEVEL');
  }
  return { value: out, notes };
}

/** A JSON pointer into `root` → path segments (numbers for list indexes, so `routes[0]`). */
function pointerToPath(pointer: string, root: unknown): PathSegment[] {
  if (pointer === '') return [];
  const path: PathSegment[] = [];
  let node = root;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    const seg = Array.isArray(node) && /^\d+$/.test(key) ? Number(key) : key;
    path.push(seg);
    node =
      isPlainObject(node) || Array.isArray(node) ? (node as Record<PathSegment, unknown>)[seg] : undefined;
  }
  return path;
}

/** By line, then path (`targets[2]` after `targets[0]`); Array.sort is stable for the rest. */
const sortProblems = (problems: ConfigProblem[]) =>
  problems.sort((a, b) => a.line - b.line || a.path.localeCompare(b.path, 'en', { numeric: true }));
