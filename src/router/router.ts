/**
 * The route table, compiled once per config: host → path tree → method.
 *
 * Most specific wins, compared in this order:
 * 1. host: an exact host beats a `*.suffix` host (the longest suffix first), which beats a route
 *    without a host. `*.example.com` matches `a.example.com` and `a.b.example.com`, never
 *    `example.com` itself. Hosts are compared lower case, without port (see host.ts).
 * 2. path: at the first segment where candidates differ, a literal beats `*`, which beats `**`;
 *    a pattern that ends where the path ends beats `**` matching nothing (`/a` over `/a/**`
 *    for the path `/a`).
 * 3. method: at the same host and path, a route listing the request's method beats one that
 *    takes all methods. Methods are compared exactly as given (GET does not imply HEAD).
 * Matching backtracks, so a less specific route still matches when a more specific branch (or
 * host) fails further on, the method included. test/unit/router.test.ts checks this against a
 * brute-force reference.
 *
 * Paths are normalised first (request-target.ts), and a trailing slash is an empty last segment:
 * the pattern `/a` matches `/a` but not `/a/`, `/a/` matches `/a/` only, `/a/**` matches both,
 * `*` never matches an empty segment, and `/` matches the root only.
 */
import type { Segment } from './pattern.js';

export type RouteSpec<T> = {
  host?: string | undefined;
  segments: Segment[];
  methods?: readonly string[] | undefined;
  value: T;
};

class MethodTable<T> {
  readonly byMethod = new Map<string, T>();
  any: T | undefined = undefined;
  lookup(method: string): T | undefined {
    return this.byMethod.get(method) ?? this.any;
  }
}

class PathNode<T> {
  literals: Map<string, PathNode<T>> | null = null;
  star: PathNode<T> | null = null;
  globstar: MethodTable<T> | null = null;
  end: MethodTable<T> | null = null;
}

class PathTree<T> {
  readonly root = new PathNode<T>();

  insert(segments: Segment[], methods: readonly string[] | undefined, value: T): void {
    let node = this.root;
    let table: MethodTable<T> | null = null;
    for (let i = 0; i < segments.length; i++) {
      const seg = segments[i] as Segment;
      if (seg.kind === 'globstar') {
        table = node.globstar ??= new MethodTable<T>();
        break;
      }
      if (seg.kind === 'star') node = node.star ??= new PathNode<T>();
      else {
        node.literals ??= new Map();
        let next = node.literals.get(seg.value);
        if (!next) node.literals.set(seg.value, (next = new PathNode<T>()));
        node = next;
      }
    }
    table ??= node.end ??= new MethodTable<T>();
    if (methods === undefined) table.any = value;
    else for (const m of methods) table.byMethod.set(m, value);
  }

  match(path: string, method: string): T | undefined {
    return matchNode(this.root, path, 1, method);
  }
}

/** `pos` is the index of the next segment's first character; past the end means no segment left. */
function matchNode<T>(node: PathNode<T>, path: string, pos: number, method: string): T | undefined {
  if (pos > path.length) {
    return node.end?.lookup(method) ?? node.globstar?.lookup(method);
  }
  let end = path.indexOf('/', pos);
  if (end === -1) end = path.length;
  if (node.literals !== null) {
    const next = node.literals.get(path.slice(pos, end));
    if (next !== undefined) {
      const found = matchNode(next, path, end + 1, method);
      if (found !== undefined) return found;
    }
  }
  if (node.star !== null && end > pos) {
    const found = matchNode(node.star, path, end + 1, method);
    if (found !== undefined) return found;
  }
  return node.globstar?.lookup(method);
}

export class Router<T> {
  private readonly exact = new Map<string, PathTree<T>>();
  private readonly wildcard: Array<{ suffix: string; tree: PathTree<T> }> = [];
  private readonly anyHost = new PathTree<T>();
  private readonly hostless: boolean;

  constructor(routes: ReadonlyArray<RouteSpec<T>>) {
    for (const r of routes) this.treeFor(r.host).insert(r.segments, r.methods, r.value);
    this.wildcard.sort((a, b) => b.suffix.length - a.suffix.length);
    this.hostless = this.exact.size === 0 && this.wildcard.length === 0;
  }

  /** `host` lower case without port; `path` normalised (see request-target.ts). */
  match(host: string, method: string, path: string): T | undefined {
    if (!this.hostless) {
      const tree = this.exact.get(host);
      const found = tree?.match(path, method);
      if (found !== undefined) return found;
      for (const w of this.wildcard) {
        if (host.length > w.suffix.length && host.endsWith(w.suffix)) {
          const hit = w.tree.match(path, method);
          if (hit !== undefined) return hit;
        }
      }
    }
    return this.anyHost.match(path, method);
  }

  private treeFor(host: string | undefined): PathTree<T> {
    if (host === undefined) return this.anyHost;
    const h = host.toLowerCase();
    if (h.startsWith('*.')) {
      const suffix = h.slice(1);
      let entry = this.wildcard.find((w) => w.suffix === suffix);
      if (!entry) this.wildcard.push((entry = { suffix, tree: new PathTree<T>() }));
      return entry.tree;
    }
    let tree = this.exact.get(h);
    if (!tree) this.exact.set(h, (tree = new PathTree<T>()));
    return tree;
  }
}
