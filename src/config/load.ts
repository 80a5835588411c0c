/**
 * Loads a config file: YAML (positions kept) → ${ENV} interpolation → environment overrides
 * (PORT, LOG_LEVEL) → defaults → schema validation → cross-field checks → a new, deeply frozen
 * `GatewayConfig`. Every problem found is reported at once with its file and line.
 *
 * Cross-field checks (checks.ts) run even when the schema found problems: each check looks only
 * at the parts of the file that satisfied the schema (a route with a bad field is skipped, the
 * others are still checked), so one run of `gatehouse validate` lists everything.
 *
 * A problem's line is the line of the key (or list item) at its path; when that is not in the
 * file (a missing key, a default), the nearest enclosing key that is.
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
import { type TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { checkFiles, checkParts, type CheckInput, type RouteParts } from './checks.js';
import { deepFreeze, withDefaults } from './defaults.js';
import { expand, extractTokens, hasPlaceholder } from './interpolate.js';
import { installErrorMessages } from './messages.js';
import { ConfigError, formatPath, type ConfigProblem, type PathSegment } from './problems.js';
import {
  AdminSchema,
  ConfigSchema,
  ListenSchema,
  LimitsSchema,
  RateLimitSchema,
  AuthSchema,
  RbacSchema,
  RedisSchema,
  RouteSchema,
  SERVICE_NAME,
  SERVICE_NAME_MESSAGE,
  ServiceSchema,
  type GatewayConfig,
} from './schema.js';

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
    return { ok: false, problems: [{ file, line: 0, path: '(file)', message: reason }] };
  }
  const draft = draftConfig(text, file, options);
  const named = draft.parts ? await checkFiles(draft.parts) : [];
  return finish(
    draft,
    named.map((p) => ({ file, line: draft.locate(p.path), path: formatPath(p.path), message: p.message })),
  );
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
 * config, its parts that satisfied the schema, and where a path is in the file.
 */
type Draft = {
  problems: ConfigProblem[];
  defaulted?: Json;
  parts?: CheckInput;
  locate: (path: readonly PathSegment[]) => number;
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
  const lineCounter = new LineCounter();
  const extracted = extractTokens(text);
  const doc = parseDocument(extracted.text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const lineOf = (offset: number) => lineCounter.linePos(offset).line;
  const problems: ConfigProblem[] = [];
  const atStart = () => 1;

  // YAML warnings (an unknown tag such as `!foo`) are problems too: the file would not mean what
  // it says. An error found at the end of the input (an unclosed `{`) goes on the last line.
  const lastLine = Math.max(1, extracted.text.trimEnd().split('\n').length);
  for (const err of [...doc.errors, ...doc.warnings]) {
    problems.push({
      file,
      line: Math.min(lineOf(err.pos[0]), lastLine),
      path: '(yaml)',
      message: err.message.split('\n')[0] ?? 'invalid YAML',
    });
  }
  if (doc.errors.length > 0) return { problems, locate: atStart };

  // A field whose interpolation failed gets no schema problem on top ("" is not a port...).
  const reported = new Set<string>();
  interpolateDocument(doc, extracted.tokens, env, (path, offset, message) => {
    reported.add(formatPath(path));
    problems.push({ file, line: lineOf(offset), path: formatPath(path), message });
  });

  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 }) ?? {};
  } catch (err) {
    // yaml throws when aliases expand too far ("billion laughs")
    problems.push({ file, line: 1, path: '(yaml)', message: (err as Error).message });
    return { problems, locate: atStart };
  }
  if (!isPlainObject(raw)) {
    problems.push({
      file,
      line: lineOf(doc.contents?.range?.[0] ?? 0),
      path: '(root)',
      message: 'must be a mapping of settings (key: value), such as "listen: { port: 8080 }"',
    });
    return { problems, locate: atStart };
  }
  const { value: overridden, notes } = applyEnvOverrides(raw, env);
  const locate = (path: readonly PathSegment[]) => lineOfPath(doc, path, lineOf);

  const defaulted = withDefaults(ConfigSchema, overridden) as Record<string, unknown>;
  for (const error of Value.Errors(ConfigSchema, defaulted)) {
    const path = pointerToPath(error.path, defaulted);
    const key = formatPath(path);
    if (reported.has(key)) continue; // one problem per field: the first is the informative one
    reported.add(key);
    const note = notes.get(key);
    problems.push({ file, line: locate(path), path: key, message: error.message + (note ?? '') });
  }

  // TypeBox reports only the first record key that fails its pattern; report them all.
  const services = defaulted.services;
  if (isPlainObject(services)) {
    for (const name of Object.keys(services)) {
      const path = ['services', name];
      if (serviceName.test(name) || reported.has(formatPath(path))) continue;
      problems.push({ file, line: locate(path), path: formatPath(path), message: SERVICE_NAME_MESSAGE });
    }
  }

  const parts = validParts(defaulted);
  for (const p of checkParts(parts)) {
    const key = formatPath(p.path);
    problems.push({ file, line: locate(p.path), path: key, message: p.message + (notes.get(key) ?? '') });
  }
  return { problems, defaulted, parts, locate };
}

type Json = Record<string, unknown>;
const serviceName = new RegExp(SERVICE_NAME);
const isPlainObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The parts of a (defaulted) config that satisfy their schema, for the cross-field checks. */
function validParts(config: Json): CheckInput {
  const valid = <T>(schema: TSchema, v: unknown): T | undefined =>
    Value.Check(schema, v) ? (v as T) : undefined;
  const route = RouteSchema.properties;
  const { listen, admin, limits, trustedProxies, services, routes } = config;
  return {
    listen: valid(ListenSchema, listen),
    admin: valid(AdminSchema, admin),
    limits: Value.Check(LimitsSchema, limits) ? Value.Decode(LimitsSchema, limits) : undefined,
    rateLimit: valid(RateLimitSchema, config.rateLimit),
    auth: config.auth === undefined ? undefined : valid(AuthSchema, config.auth),
    authValidated: config.auth === undefined || Value.Check(AuthSchema, config.auth),
    roles: isPlainObject(config.rbac) ? valid(RbacSchema.properties.roles, config.rbac.roles) : undefined,
    redis: config.redis === undefined ? undefined : valid(RedisSchema, config.redis),
    trustedProxies: Array.isArray(trustedProxies)
      ? trustedProxies.map((e: unknown) => (typeof e === 'string' ? e : undefined))
      : undefined,
    services: isPlainObject(services)
      ? Object.fromEntries(
          Object.entries(services).map(([name, s]) => [
            name,
            isPlainObject(s) && Array.isArray(s.targets)
              ? s.targets.map((t: unknown) => valid<string>(ServiceSchema.properties.targets.items, t))
              : undefined,
          ]),
        )
      : undefined,
    serviceConfigs: isPlainObject(services)
      ? Object.fromEntries(
          Object.entries(services)
            .filter(([, s]) => Value.Check(ServiceSchema, s))
            .map(([name, s]) => [name, Value.Decode(ServiceSchema, s)]),
        )
      : undefined,
    routes: Array.isArray(routes)
      ? routes.map((r: unknown): RouteParts => {
          if (!isPlainObject(r)) return {};
          const match = isPlainObject(r.match) ? r.match : {};
          return {
            name: valid(route.name, r.name),
            service: valid(route.service, r.service),
            path: valid(route.match.properties.path, match.path),
            match: valid(route.match, r.match),
            stripPrefix: valid(route.stripPrefix, r.stripPrefix),
            rateLimit: valid(route.rateLimit, r.rateLimit),
            auth: valid(route.auth, r.auth),
            permissions: valid(route.permissions, r.permissions),
          };
        })
      : undefined,
  };
}

/** The line of the key (or list item) deepest along `path` that the file contains; 1 if none. */
function lineOfPath(doc: Document, path: readonly PathSegment[], lineOf: (offset: number) => number): number {
  let node: unknown = doc.contents;
  let line = 1;
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
    if (range?.[0] !== undefined) line = lineOf(range[0]);
  }
  return line;
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
