/**
 * The endpoint reference of docs/admin-api.md, generated from the route table (the same
 * declarations the server routes with and the OpenAPI document is built from):
 * `npm run docs:admin` writes it between the markers, and a test fails when it is not current.
 */
import type { TSchema } from '@sinclair/typebox';
import { jsonOf, problemsOf, TAGS } from './openapi.js';
import type { AdminRoute } from './route-table.js';

export const BEGIN = '<!-- BEGIN GENERATED: npm run docs:admin -->';
export const END = '<!-- END GENERATED -->';

type Json = Record<string, unknown>;

const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** A schema as a short type: `string`, `integer 1–500`, `"a" \| "b"`, `string[]`, `object`. */
function typeOf(s: Json): string {
  if (Array.isArray(s.anyOf)) return (s.anyOf as Json[]).map(typeOf).join(' or ');
  if (s.const !== undefined) return JSON.stringify(s.const);
  if (s.type === 'array') return `${typeOf((s.items ?? {}) as Json)}[]`;
  if (s.type === 'integer' || s.type === 'number') {
    const range =
      s.minimum !== undefined && s.maximum !== undefined
        ? ` ${String(s.minimum)}–${String(s.maximum)}`
        : s.minimum !== undefined
          ? ` ≥ ${String(s.minimum)}`
          : '';
    return `${String(s.type)}${range}`;
  }
  if (s.type === 'string' && s.format === 'date-time') return 'date-time';
  if (s.type === 'null') return 'null';
  return typeof s.type === 'string' ? s.type : 'any';
}

function fields(schema: TSchema, where: string): string[] {
  const json = jsonOf(schema);
  const props = (json.properties ?? {}) as Record<string, Json>;
  const required = new Set((json.required ?? []) as string[]);
  return Object.entries(props).map(([name, s]) => {
    const notes = [
      where === 'path' || required.has(name) ? 'required' : 'optional',
      s.default !== undefined ? `default ${JSON.stringify(s.default)}` : '',
      typeof s.pattern === 'string' ? `pattern \`${s.pattern}\`` : '',
      typeof s.maxLength === 'number' ? `at most ${s.maxLength} characters` : '',
      typeof s.description === 'string' ? s.description : '',
    ].filter((x) => x !== '');
    return `| ${where} | \`${name}\` | ${cell(typeOf(s))} | ${cell(notes.join('; '))} |`;
  });
}

function section(r: AdminRoute<unknown>): string {
  const role = r.open ? 'none (open)' : r.mutating ? '`admin` (audited)' : '`read` or `admin`';
  const out = [`### \`${r.method} ${r.path}\``, '', `${r.summary}.`, ''];
  if (r.description) out.push(r.description, '');
  out.push(`operationId \`${r.operationId}\` · token: ${role}`, '');
  const rows = [
    ...(r.params ? fields(r.params, 'path') : []),
    ...(r.query ? fields(r.query, 'query') : []),
    ...(r.body ? fields(r.body, 'body') : []),
  ];
  if (rows.length > 0) out.push('| in | name | type | notes |', '| --- | --- | --- | --- |', ...rows, '');
  if (r.body)
    out.push(`Unknown body fields are refused (400).${r.bodyOptional ? ' The body may be empty.' : ''}`, '');
  const answers = Object.entries(r.responses).map(([status, spec]) => `- \`${status}\`: ${spec.description}`);
  for (const [status, codes] of problemsOf(r))
    answers.push(`- \`${status}\`: ${codes.map((c) => `[\`${c}\`](errors.md#${c})`).join(', ')}`);
  out.push('Answers:', '', ...answers, '');
  return out.join('\n');
}

export function adminReference(
  routes: readonly AdminRoute<never>[] | readonly AdminRoute<unknown>[],
): string {
  const all = routes as readonly AdminRoute<unknown>[];
  const out: string[] = [BEGIN, ''];
  out.push('| endpoint | operationId | token | what it does |', '| --- | --- | --- | --- |');
  for (const r of all)
    out.push(
      `| [\`${r.method} ${r.path}\`](#${anchor(r)}) | \`${r.operationId}\` | ${r.open ? 'none' : r.mutating ? 'admin' : 'read'} | ${cell(r.summary)} |`,
    );
  out.push('');
  for (const tag of TAGS) {
    const inTag = all.filter((r) => r.tag === tag.name);
    if (inTag.length === 0) continue;
    out.push(`## ${tag.name}`, '', `${tag.description}.`, '');
    for (const r of inTag) out.push(section(r));
  }
  out.push(END);
  return out.join('\n');
}

/** GitHub's anchor of `### \`METHOD /path\``. */
function anchor(r: AdminRoute<unknown>): string {
  return `${r.method} ${r.path}`
    .toLowerCase()
    .replace(/[^a-z0-9 _-]/g, '')
    .replace(/ /g, '-');
}

/** `doc` with its generated part replaced by `reference`. */
export function withReference(doc: string, reference: string): string {
  const begin = doc.indexOf(BEGIN);
  const end = doc.indexOf(END);
  if (begin < 0 || end < begin) throw new Error('the generated-part markers are missing');
  return doc.slice(0, begin) + reference + doc.slice(end + END.length);
}
