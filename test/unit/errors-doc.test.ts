/**
 * The problem registry and docs/errors.md say the same, both ways: every code of the registry has
 * its row (status, title, port, when) and its section (the target of its `type` URI), and the doc
 * has no code the registry lacks. The other docs' mentions of a code with its status agree too.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../src/problems/error-codes.js';
import {
  PROBLEM_CODES,
  PROBLEM_REGISTRY,
  problemType,
  type ProblemCode,
  type ProblemDefinition,
} from '../../src/problems/registry.js';

const ROOT = join(import.meta.dirname, '..', '..');
const DOC = readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8');

/** The lines of the section under `heading` (up to the next heading of the same level or above). */
function section(text: string, heading: string): string[] {
  const lines = text.split('\n');
  const start = lines.indexOf(heading);
  expect(start, `docs/errors.md has "${heading}"`).toBeGreaterThanOrEqual(0);
  const level = heading.indexOf(' ');
  const end = lines.findIndex((l, i) => i > start && /^#+ /.test(l) && l.indexOf(' ') <= level);
  return lines.slice(start + 1, end === -1 ? undefined : end);
}

/** The body rows of the first table in `lines`, as trimmed cells. */
function tableRows(lines: readonly string[]): string[][] {
  const table = lines.filter((l) => l.startsWith('|'));
  expect(table.length, 'a table').toBeGreaterThan(2);
  // a cell may hold an escaped pipe (`\|`)
  const cells = (l: string) =>
    l
      .slice(1, -1)
      .split(/(?<!\\)\|/)
      .map((c) => c.trim().replace(/\\\|/g, '|'));
  return table.slice(2).map(cells);
}

const PORT_WORDS: Record<ProblemDefinition['port'], string> = {
  proxy: 'proxy port',
  admin: 'admin port',
  both: 'both ports',
};

describe('docs/errors.md and the problem registry', () => {
  const rows = tableRows(section(DOC, '## Problem codes'));
  const documented = new Map(
    rows.map((cells) => {
      const [code, status, title, port, when] = cells;
      const m = /^\[`([a-z_]+)`\]\(#([a-z_]+)\)$/.exec(code ?? '');
      expect(m, `a code cell links to its section: ${code}`).not.toBeNull();
      expect(m?.[2]).toBe(m?.[1]);
      return [m?.[1] as string, { status: Number(status), title, port, when }];
    }),
  );

  it('lists every code of the registry, once, as the registry defines it', () => {
    expect(rows.length).toBe(documented.size); // no code twice
    for (const code of PROBLEM_CODES) {
      const d: ProblemDefinition = PROBLEM_REGISTRY[code];
      expect(documented.get(code), code).toEqual({
        status: d.status,
        title: d.title,
        port: d.port,
        when: d.when,
      });
    }
  });

  it('lists no code the registry lacks', () => {
    expect([...documented.keys()].filter((c) => !(c in PROBLEM_REGISTRY))).toEqual([]);
  });

  it('has a section per code, the target of its type URI, naming status, title, port and type', () => {
    const sections = section(DOC, '## The codes one by one')
      .filter((l) => l.startsWith('### '))
      .map((l) => l.slice(4));
    expect([...sections].sort()).toEqual([...PROBLEM_CODES].sort());
    for (const code of PROBLEM_CODES) {
      const d: ProblemDefinition = PROBLEM_REGISTRY[code];
      const first = section(DOC, `### ${code}`).find((l) => l.trim() !== '');
      expect(first, code).toBe(`${d.status} ${d.title} · ${PORT_WORDS[d.port]} · \`${problemType(code)}\``);
      expect(problemType(code)).toBe(`https://gatehouse.dev/problems/${code}`);
    }
  });

  it('lists every internal error code, and no other', () => {
    const codes = tableRows(section(DOC, '## Internal error codes')).map((cells) =>
      (cells[0] ?? '').replace(/`/g, ''),
    );
    expect([...codes].sort()).toEqual(Object.values(ErrorCodes).sort());
  });
});

describe('the other docs name codes with their registry status', () => {
  const files = [
    ...readdirSync(join(ROOT, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => join('docs', f)),
    'README.md',
  ];
  const isCode = (c: string): c is ProblemCode => c in PROBLEM_REGISTRY;

  it.each(files)('%s', (file) => {
    const wrong: string[] = [];
    const check = (line: number, status: string, code: string, mustExist: boolean) => {
      if (!isCode(code)) {
        if (mustExist) wrong.push(`${file}:${line}: ${status} ${code}: no such problem code`);
        return;
      }
      const want = PROBLEM_REGISTRY[code].status;
      if (Number(status) !== want)
        wrong.push(`${file}:${line}: ${status} ${code}: the registry says ${want}`);
    };
    readFileSync(join(ROOT, file), 'utf8')
      .split('\n')
      .forEach((text, i) => {
        const line = i + 1;
        // `400 bad_request`: the docs' way of naming a problem
        for (const m of text.matchAll(/`(\d{3}) ([a-z][a-z0-9_]*)`/g))
          check(line, m[1] ?? '', m[2] ?? '', true);
        // 503 `store_unavailable` (prose; other systems' codes, such as Elasticsearch's, pass)
        for (const m of text.matchAll(/\b(\d{3})\s+(?:\*\*)?`([a-z][a-z0-9_]*)`/g))
          check(line, m[1] ?? '', m[2] ?? '', false);
        // a table row with a status cell and a code cell
        if (text.startsWith('|')) {
          const cells = text.split('|').map((c) => c.trim());
          const status = cells.find((c) => /^\d{3}$/.test(c));
          if (status !== undefined) {
            for (const c of cells) {
              const m = /^`([a-z][a-z0-9_]*)`$/.exec(c);
              if (m?.[1] !== undefined && isCode(m[1])) check(line, status, m[1], true);
            }
          }
        }
      });
    expect(wrong).toEqual([]);
  });
});
