/**
 * promtool (Debian package `prometheus`, installed by scripts/test-deps.sh) for the deploy/ files:
 * runs it, and turns a Grafana dashboard's queries into a recording-rule file that
 * `promtool check rules` parses, so every panel's PromQL is checked without a Prometheus server.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';

export type PromtoolRun = { code: number | null; output: string };

export const PROMTOOL_MISSING =
  'promtool not found: install the Debian package `prometheus` (run scripts/test-deps.sh as root), ' +
  'or point PROMTOOL at the binary';

/**
 * Runs promtool (with `input` on its stdin, e.g. for `check metrics`); resolves with its exit code
 * and stdout+stderr, rejects only when it cannot start.
 */
export function promtool(args: string[], cwd?: string, input?: string): Promise<PromtoolRun> {
  const bin = process.env.PROMTOOL ?? 'promtool';
  return new Promise((resolve, reject) => {
    // the timeout only stops a hung child; nothing asserts on time
    const child = execFile(
      bin,
      args,
      { timeout: 30_000, ...(cwd === undefined ? {} : { cwd }) },
      (error, stdout, stderr) => {
        const output = stdout + stderr;
        if (error === null) return resolve({ code: 0, output });
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return reject(new Error(PROMTOOL_MISSING));
        resolve({
          code: typeof error.code === 'number' ? error.code : null,
          output: output || error.message,
        });
      },
    );
    child.stdin?.end(input ?? '');
  });
}

/** One PromQL expression of a dashboard and where it comes from, for error messages. */
export type DashboardQuery = { where: string; expr: string };

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const objects = (v: unknown): Json[] => (Array.isArray(v) ? v.filter(isObject) : []);
const text = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** Panels at any depth: a collapsed row keeps its panels inside it. */
export function allPanels(dashboard: unknown): Json[] {
  const walk = (list: unknown): Json[] => objects(list).flatMap((p) => [p, ...walk(p['panels'])]);
  return isObject(dashboard) ? walk(dashboard['panels']) : [];
}

export function templateVariables(dashboard: unknown): Json[] {
  const templating = isObject(dashboard) ? dashboard['templating'] : undefined;
  return isObject(templating) ? objects(templating['list']) : [];
}

/**
 * The PromQL a variable query holds: the selector of `label_values(selector, label)`, the
 * expression of `query_result(expr)`; nothing for `label_values(label)`, `label_names()`, etc.
 */
export function variableQueryExpr(query: string): string | undefined {
  const q = query.trim();
  const labelValues = /^label_values\(\s*([\s\S]+),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)$/.exec(q);
  if (labelValues) return labelValues[1];
  const queryResult = /^query_result\(([\s\S]+)\)$/.exec(q);
  return queryResult?.[1];
}

/** Every expression of the dashboard: panel targets (rows included) and query variables. */
export function dashboardQueries(dashboard: unknown): DashboardQuery[] {
  const fromPanels = allPanels(dashboard).flatMap((panel) =>
    objects(panel['targets']).flatMap((target) => {
      const expr = text(target['expr']);
      const where = `panel ${String(panel['id'])} "${String(panel['title'])}" target ${String(target['refId'])}`;
      return expr === undefined ? [] : [{ where, expr }];
    }),
  );
  const fromVariables = templateVariables(dashboard).flatMap((variable) => {
    if (variable['type'] !== 'query') return [];
    const raw = variable['query'];
    const query = isObject(raw) ? text(raw['query']) : text(raw);
    const expr = query === undefined ? undefined : variableQueryExpr(query);
    return expr === undefined ? [] : [{ where: `variable $${String(variable['name'])}`, expr }];
  });
  return [...fromPanels, ...fromVariables];
}

/** Grafana's own variables, with values the way Grafana renders them into a query. */
export const BUILTIN_VARIABLES: Readonly<Record<string, string>> = {
  __rate_interval: '1m',
  __rate_interval_ms: '60000',
  __interval: '30s',
  __interval_ms: '30000',
  __range: '1h',
  __range_s: '3600',
  __range_ms: '3600000',
};

/**
 * A concrete value for each dashboard variable: the "All" value of a multi-value variable (a
 * regex, as in `label=~"$var"`), else its current value, else a plain placeholder.
 */
export function variableValues(dashboard: unknown): Record<string, string> {
  const values: Record<string, string> = { ...BUILTIN_VARIABLES };
  for (const variable of templateVariables(dashboard)) {
    const name = text(variable['name']);
    if (name === undefined) continue;
    const current = isObject(variable['current']) ? text(variable['current']['value']) : undefined;
    values[name] = text(variable['allValue']) ?? current ?? 'placeholder';
  }
  return values;
}

// $var, ${var}, ${var:format}, [[var]], [[var:format]]
const VARIABLE = /\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]/g;

/** Replaces Grafana variables with `values`; a variable without a value is an error, not a guess. */
export function substituteVariables(expr: string, values: Readonly<Record<string, string>>): string {
  return expr.replace(VARIABLE, (match, braced?: string, bare?: string, bracketed?: string) => {
    const name = braced ?? bare ?? bracketed ?? '';
    const value = values[name];
    if (value === undefined) throw new Error(`unknown variable ${match} in: ${expr}`);
    return value;
  });
}

export type RecordingRule = { record: string; expr: string; where: string };

/** Names each query as a recording rule (`dashboard:q<n>`); variables are substituted first. */
export function asRecordingRules(
  queries: DashboardQuery[],
  values: Readonly<Record<string, string>>,
): RecordingRule[] {
  return queries.map((q, i) => ({
    record: `dashboard:q${i}`,
    expr: substituteVariables(q.expr, values),
    where: q.where,
  }));
}

export function recordingRulesYaml(rules: RecordingRule[]): string {
  return stringify({
    groups: [{ name: 'dashboard', rules: rules.map(({ record, expr }) => ({ record, expr })) }],
  });
}

/**
 * `promtool check rules` on the rules written to a temp file. On failure the output ends with
 * which panel each rule name stands for, since promtool only knows the rule names.
 */
export async function checkRecordingRules(rules: RecordingRule[]): Promise<PromtoolRun> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-promql-'));
  const file = join(dir, 'dashboard.rules.yml');
  writeFileSync(file, recordingRulesYaml(rules));
  const run = await promtool(['check', 'rules', file]).finally(() =>
    rmSync(dir, { recursive: true, force: true }),
  );
  if (run.code === 0) return run;
  const legend = rules.map((r) => `  ${r.record} = ${r.where}: ${r.expr}`).join('\n');
  return { code: run.code, output: `${run.output}\nrules:\n${legend}` };
}
