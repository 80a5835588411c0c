import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { normaliseHost } from '../../src/router/host.js';
import { parsePattern, type Segment } from '../../src/router/pattern.js';
import { Router, type RouteSpec } from '../../src/router/router.js';

type Route = { host?: string; path: string; methods?: readonly string[] };

function segmentsOf(path: string): Segment[] {
  const parsed = parsePattern(path);
  if (!parsed.ok) throw new Error(`${path}: ${parsed.reason}`);
  return parsed.segments;
}

/** A router whose values are the routes' names. */
function router(routes: Record<string, Route>): Router<string> {
  return new Router(
    Object.entries(routes).map(([name, r]) => ({
      host: r.host,
      segments: segmentsOf(r.path),
      methods: r.methods,
      value: name,
    })),
  );
}

/** The route name for a request; `host` as it arrives in the Host header. */
const route = (r: Router<string>, path: string, method = 'GET', host = 'example.com') =>
  r.match(normaliseHost(host), method, path);

describe('path patterns', () => {
  const r = router({
    exact: { path: '/a/b' },
    one: { path: '/x/*' },
    rest: { path: '/s/**' },
    root: { path: '/' },
    slash: { path: '/t/' },
    bare: { path: '/t' },
  });

  it('a literal pattern matches that path only', () => {
    expect(route(r, '/a/b')).toBe('exact');
    for (const p of ['/a', '/a/', '/a/b/', '/a/b/c', '/a/bb', '/A/b']) expect(route(r, p), p).toBeUndefined();
  });

  it('"*" matches exactly one non-empty segment', () => {
    expect(route(r, '/x/1')).toBe('one');
    expect(route(r, '/x/any-thing.json')).toBe('one');
    for (const p of ['/x', '/x/', '/x/1/', '/x/1/2']) expect(route(r, p), p).toBeUndefined();
  });

  it('"**" matches zero or more segments, including an empty last one', () => {
    for (const p of ['/s', '/s/', '/s/1', '/s/1/2/3', '/s/1/']) expect(route(r, p), p).toBe('rest');
    for (const p of ['/sx', '/q/s']) expect(route(r, p), p).toBeUndefined();
  });

  it('"/" matches the root only; "/**" matches everything', () => {
    expect(route(r, '/')).toBe('root');
    expect(route(r, '/zzz')).toBeUndefined();
    const all = router({ all: { path: '/**' } });
    for (const p of ['/', '/a', '/a/', '/a/b/c']) expect(route(all, p), p).toBe('all');
    expect(route(router({ one: { path: '/*' } }), '/')).toBeUndefined();
  });

  it('a trailing slash is significant: "/t" and "/t/" are different paths', () => {
    expect(route(r, '/t')).toBe('bare');
    expect(route(r, '/t/')).toBe('slash');
    expect(route(router({ bare: { path: '/t' } }), '/t/')).toBeUndefined();
    expect(route(router({ slash: { path: '/t/' } }), '/t')).toBeUndefined();
  });
});

describe('most specific wins', () => {
  it('literal beats "*" beats "**" at the first segment where they differ', () => {
    const r = router({
      literal: { path: '/a/b' },
      star: { path: '/a/*' },
      glob: { path: '/a/**' },
      early: { path: '/*/b/c' },
    });
    expect(route(r, '/a/b')).toBe('literal');
    expect(route(r, '/a/c')).toBe('star');
    expect(route(r, '/a/c/d')).toBe('glob');
    expect(route(r, '/a')).toBe('glob');
    // the first segment decides: literal "a" (glob) beats "*" (early), though early is longer
    expect(route(r, '/a/b/c')).toBe('glob');
    expect(route(r, '/z/b/c')).toBe('early');
  });

  it('a pattern that ends beats "**" matching nothing', () => {
    const r = router({ end: { path: '/a' }, glob: { path: '/a/**' }, rootGlob: { path: '/**' } });
    expect(route(r, '/a')).toBe('end');
    expect(route(r, '/a/')).toBe('glob');
    expect(route(r, '/b')).toBe('rootGlob');
  });

  it('backtracks when the more specific branch fails further on', () => {
    const r = router({
      deep: { path: '/a/b/c' },
      star: { path: '/a/*/d' },
      glob: { path: '/a/b/**', methods: ['POST'] },
      last: { path: '/**' },
    });
    expect(route(r, '/a/b/c')).toBe('deep');
    expect(route(r, '/a/b/d')).toBe('star');
    expect(route(r, '/a/b/e', 'POST')).toBe('glob');
    expect(route(r, '/a/b/e', 'GET')).toBe('last');
  });

  it('a route listing the method beats one taking all methods, and others fall through', () => {
    const r = router({
      get: { path: '/a', methods: ['GET', 'HEAD'] },
      post: { path: '/a', methods: ['POST'] },
      any: { path: '/a' },
      other: { path: '/*', methods: ['DELETE'] },
    });
    expect(route(r, '/a', 'GET')).toBe('get');
    expect(route(r, '/a', 'HEAD')).toBe('get');
    expect(route(r, '/a', 'POST')).toBe('post');
    expect(route(r, '/a', 'PUT')).toBe('any');
    expect(route(r, '/a', 'DELETE')).toBe('any'); // same path, method-agnostic beats a less specific path
    expect(route(router({ get: { path: '/a', methods: ['GET'] } }), '/a', 'POST')).toBeUndefined();
    // methods are compared as given: the data plane passes Node's upper-case method
    expect(route(r, '/a', 'get')).toBe('any');
  });
});

describe('hosts', () => {
  const r = router({
    exact: { host: 'api.example.com', path: '/**' },
    wild: { host: '*.example.com', path: '/**' },
    deeper: { host: '*.eu.example.com', path: '/**' },
    upper: { host: 'UPPER.Example.com', path: '/x' },
    none: { path: '/**' },
  });

  it('an exact host beats a wildcard host, which beats no host, whatever the paths', () => {
    expect(route(r, '/a', 'GET', 'api.example.com')).toBe('exact');
    expect(route(r, '/a', 'GET', 'web.example.com')).toBe('wild');
    expect(route(r, '/a', 'GET', 'other.org')).toBe('none');
    const pathVsHost = router({ hostGlob: { host: 'h.com', path: '/**' }, literal: { path: '/a/b' } });
    expect(route(pathVsHost, '/a/b', 'GET', 'h.com')).toBe('hostGlob');
  });

  it('the longest wildcard suffix wins; a wildcard covers deeper subdomains too', () => {
    expect(route(r, '/', 'GET', 'x.eu.example.com')).toBe('deeper');
    expect(route(r, '/', 'GET', 'a.b.example.com')).toBe('wild');
  });

  it('a wildcard host does not match the bare domain', () => {
    expect(route(r, '/', 'GET', 'example.com')).toBe('none');
    expect(route(r, '/', 'GET', 'eu.example.com')).toBe('wild');
    expect(route(r, '/', 'GET', 'notexample.com')).toBe('none');
  });

  it('compares hosts without case, ignoring the port and a trailing dot', () => {
    expect(route(r, '/', 'GET', 'API.Example.COM:8443')).toBe('exact');
    expect(route(r, '/', 'GET', 'api.example.com.')).toBe('exact');
    expect(route(r, '/x', 'GET', 'upper.example.com')).toBe('upper');
    expect(route(r, '/', 'GET', 'Www.EXAMPLE.com:80')).toBe('wild');
  });

  it('falls back to a less specific host when the path does not match there', () => {
    const fallback = router({ exact: { host: 'h.com', path: '/only' }, none: { path: '/**' } });
    expect(route(fallback, '/only', 'GET', 'h.com')).toBe('exact');
    expect(route(fallback, '/else', 'GET', 'h.com')).toBe('none');
  });

  it('a request without a host reaches host-less routes only', () => {
    expect(route(r, '/', 'GET', '')).toBe('none');
  });
});

describe('normaliseHost', () => {
  it.each([
    ['Api.Example.com:8080', 'api.example.com'],
    ['example.com', 'example.com'],
    ['example.com.', 'example.com'],
    ['example.com.:80', 'example.com'],
    ['[::1]:8080', '[::1]'],
    ['[::1]', '[::1]'],
    ['127.0.0.1:80', '127.0.0.1'],
    ['', ''],
  ])('%j → %j', (input, expected) => {
    expect(normaliseHost(input)).toBe(expected);
  });

  it('treats a missing header as no host', () => {
    expect(normaliseHost(undefined)).toBe('');
  });
});

/**
 * The reference: every route that matches, then the most specific by the documented ordering:
 * host (exact, then the longest wildcard suffix, then none), then the path compared segment by
 * segment (literal, or the pattern's end, beats "*" beats "**"), then a listed method over all.
 */
function reference(
  routes: ReadonlyArray<Route & { name: string; segments: Segment[] }>,
  host: string,
  method: string,
  path: string,
) {
  const req = path.slice(1).split('/');
  const hostRank = (h: string | undefined): number => {
    if (h === undefined) return 0;
    if (h.startsWith('*.')) return host.endsWith(h.slice(1)) && host.length > h.length - 1 ? h.length : -1;
    return h === host ? 1000 : -1;
  };
  const pathRanks = (segments: Segment[]): number[] | null => {
    const ranks: number[] = [];
    for (let i = 0; i < segments.length; i++) {
      const seg = segments[i] as Segment;
      if (seg.kind === 'globstar') return [...ranks, 1];
      const part = req[i];
      if (part === undefined) return null;
      if (seg.kind === 'star' && part === '') return null;
      if (seg.kind === 'literal' && seg.value !== part) return null;
      ranks.push(seg.kind === 'literal' ? 3 : 2);
    }
    return ranks.length === req.length ? ranks : null;
  };
  const candidates = routes.flatMap((r) => {
    const h = hostRank(r.host);
    const p = pathRanks(r.segments);
    if (h < 0 || p === null || (r.methods && !r.methods.includes(method))) return [];
    return [{ name: r.name, key: [h, ...p.concat(Array(8 - p.length).fill(3)), r.methods ? 1 : 0] }];
  });
  const better = (a: number[], b: number[]) => {
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return (a[i] as number) > (b[i] as number);
    return false;
  };
  let best: (typeof candidates)[number] | undefined;
  for (const c of candidates) if (!best || better(c.key, best.key)) best = c;
  return best?.name;
}

describe('the router against a brute-force reference', () => {
  const segment = fc.constantFrom('a', 'b', '*');
  const patternArb = fc
    .tuple(fc.array(segment, { maxLength: 2 }), fc.constantFrom('', '/', '/**'))
    .map(([segs, end]) => (segs.length === 0 ? (end === '/**' ? '/**' : '/') : `/${segs.join('/')}${end}`));
  const routeArb = fc.record(
    {
      host: fc.constantFrom('a.com', 'x.a.com', '*.a.com', '*.x.a.com'),
      path: patternArb,
      methods: fc.constantFrom(['GET'], ['POST'], ['GET', 'POST']),
    },
    { requiredKeys: ['path'] },
  );
  /** Every request of a small universe is checked against each route set. */
  const requests: Array<{ host: string; method: string; path: string }> = [];
  const paths = ['/'];
  for (const a of ['a', 'b', 'c']) {
    paths.push(`/${a}`, `/${a}/`);
    for (const b of ['a', 'b', 'c']) {
      paths.push(`/${a}/${b}`, `/${a}/${b}/`);
      for (const c of ['a', 'c']) paths.push(`/${a}/${b}/${c}`);
    }
  }
  for (const host of ['a.com', 'x.a.com', 'y.x.a.com', 'c.com', ''])
    for (const method of ['GET', 'POST', 'PUT'])
      for (const path of paths) requests.push({ host, method, path });

  /** Drops routes the loader would refuse as identical (same host and path, methods clash). */
  function loadable(routes: Route[]): Array<Route & { name: string; segments: Segment[] }> {
    const kept: Array<Route & { name: string; segments: Segment[] }> = [];
    for (const [i, r] of routes.entries()) {
      const clash = kept.some(
        (k) =>
          k.host === r.host &&
          JSON.stringify(segmentsOf(k.path)) === JSON.stringify(segmentsOf(r.path)) &&
          (k.methods === undefined || r.methods === undefined
            ? k.methods === r.methods
            : k.methods.some((m) => r.methods?.includes(m))),
      );
      if (!clash) kept.push({ ...r, name: `r${i}`, segments: segmentsOf(r.path) });
    }
    return kept;
  }

  it('gives the same answer for random route sets and requests', () => {
    fc.assert(
      fc.property(fc.array(routeArb, { maxLength: 16 }), (rs) => {
        const routes = loadable(rs);
        const specs: RouteSpec<string>[] = routes.map((r) => ({
          host: r.host,
          segments: segmentsOf(r.path),
          methods: r.methods,
          value: r.name,
        }));
        const table = new Router(specs);
        for (const q of requests) {
          const got = table.match(q.host, q.method, q.path);
          const want = reference(routes, q.host, q.method, q.path);
          if (got !== want) expect(got, `${q.method} ${q.host}${q.path}`).toBe(want);
        }
      }),
      { numRuns: 200 },
    );
  });
});
