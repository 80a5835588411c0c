/**
 * The compiled parts of a transform, each a function made once per route: header operations on
 * a flat [name, value, ...] list, the path rewrite (a prefix, or a pattern with named segments),
 * and the query parameters added and removed.
 */
import type { RequestContext } from '../stage.js';
import { compileTemplate, render, type Template } from './template.js';

export type HeaderOpsConfig = {
  readonly add?: Readonly<Record<string, string>> | undefined;
  readonly set?: Readonly<Record<string, string>> | undefined;
  readonly remove?: readonly string[] | undefined;
  readonly rename?: Readonly<Record<string, string>> | undefined;
};

export type HeaderOps = (ctx: RequestContext, headers: string[]) => void;

/**
 * remove, rename, set, add, in that order (names compared case-insensitively; the list's own
 * names may be in any case). A value that renders to null is not sent (set still removes).
 */
export function compileHeaderOps(config: HeaderOpsConfig): HeaderOps {
  const remove = new Set((config.remove ?? []).map((n) => n.toLowerCase()));
  const rename = new Map(
    Object.entries(config.rename ?? {}).map(([a, b]) => [a.toLowerCase(), b.toLowerCase()]),
  );
  const set = Object.entries(config.set ?? {}).map(
    ([n, v]) => [n.toLowerCase(), compileTemplate(v)] as const,
  );
  const add = Object.entries(config.add ?? {}).map(
    ([n, v]) => [n.toLowerCase(), compileTemplate(v)] as const,
  );
  for (const [name] of set) remove.add(name);
  const filters = remove.size > 0 || rename.size > 0;
  return (ctx, headers) => {
    if (filters) {
      let w = 0;
      for (let r = 0; r < headers.length; r += 2) {
        let name = headers[r] as string;
        const lower = name.toLowerCase();
        if (remove.has(lower)) continue;
        const to = rename.get(lower);
        if (to !== undefined) name = to;
        headers[w++] = name;
        headers[w++] = headers[r + 1] as string;
      }
      headers.length = w;
    }
    for (let i = 0; i < set.length; i++) push(ctx, headers, set[i] as readonly [string, Template]);
    for (let i = 0; i < add.length; i++) push(ctx, headers, add[i] as readonly [string, Template]);
  };
}

function push(ctx: RequestContext, headers: string[], [name, template]: readonly [string, Template]): void {
  const value = render(template, ctx);
  if (value !== null) headers.push(name, value);
}

export type PathRewriteConfig = {
  readonly prefix?: { readonly from: string; readonly to: string } | undefined;
  readonly pattern?: { readonly from: string; readonly to: string } | undefined;
};

/** The new path, or the path itself when the rewrite does not apply to it. */
export type PathRewrite = (path: string) => string;

const trimSlash = (p: string) => (p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p);

export function compilePathRewrite(config: PathRewriteConfig): PathRewrite {
  if (config.prefix !== undefined) {
    const from = trimSlash(config.prefix.from);
    const to = trimSlash(config.prefix.to);
    if (from === '/') return (path) => (to === '/' ? path : to + path);
    return (path) => {
      if (!path.startsWith(from)) return path;
      if (path.length === from.length) return to;
      if (path.charCodeAt(from.length) !== 0x2f) return path; // whole segments only
      const rest = path.slice(from.length);
      return to === '/' ? rest : to + rest;
    };
  }
  const pattern = config.pattern;
  if (pattern === undefined) return (path) => path;
  const names: string[] = [];
  let source = '^';
  for (const seg of pattern.from.split('/').slice(1)) {
    const m = /^\{([A-Za-z_][A-Za-z0-9_]*)(\*?)\}$/.exec(seg);
    if (m === null) source += '/' + seg.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    else if (m[2] === '*') {
      names.push(m[1] as string);
      source += '(?:/(.*))?';
    } else {
      names.push(m[1] as string);
      source += '/([^/]+)';
    }
  }
  const re = new RegExp(source + '$');
  const out = pattern.to
    .split('/')
    .slice(1)
    .map((seg) => {
      const m = /^\{([A-Za-z_][A-Za-z0-9_]*)\*?\}$/.exec(seg);
      return m === null ? { literal: seg } : { index: names.indexOf(m[1] as string) + 1 };
    });
  return (path) => {
    const m = re.exec(path);
    if (m === null) return path;
    let result = '';
    for (let i = 0; i < out.length; i++) {
      const part = out[i] as { literal: string } | { index: number };
      if ('literal' in part) result += '/' + part.literal;
      else {
        const value = m[part.index];
        if (value !== undefined) result += '/' + value; // an absent {rest*} adds nothing
      }
    }
    return result === '' ? '/' : result;
  };
}

export type QueryOpsConfig = {
  readonly add?: Readonly<Record<string, string>> | undefined;
  readonly remove?: readonly string[] | undefined;
};

export type QueryOps = (ctx: RequestContext, query: string) => string;

/** Removes every occurrence of the named parameters (compared decoded), then adds. */
export function compileQueryOps(config: QueryOpsConfig): QueryOps {
  const remove = new Set(config.remove ?? []);
  const add = Object.entries(config.add ?? {}).map(
    ([n, v]) => [encodeURIComponent(n), compileTemplate(v)] as const,
  );
  return (ctx, query) => {
    let out = query;
    if (remove.size > 0 && query !== '') {
      out = query
        .split('&')
        .filter((p) => {
          const eq = p.indexOf('=');
          return !remove.has(decodeName(eq === -1 ? p : p.slice(0, eq)));
        })
        .join('&');
    }
    for (let i = 0; i < add.length; i++) {
      const [name, template] = add[i] as readonly [string, Template];
      const value = render(template, ctx);
      if (value === null) continue;
      out += (out === '' ? '' : '&') + name + '=' + encodeURIComponent(value);
    }
    return out;
  };
}

function decodeName(raw: string): string {
  try {
    return decodeURIComponent(raw.replaceAll('+', ' '));
  } catch {
    return raw;
  }
}
