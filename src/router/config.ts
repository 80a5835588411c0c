/**
 * The fields of a route that say which requests it takes and where they go (its name, `match`,
 * `service`, `stripPrefix`), and the checks across routes: unique names, known services, valid
 * patterns and prefixes, no two routes taking the same requests. The route's other fields belong
 * to the capabilities that read them; config/schema.ts puts the route together.
 */
import { Type, type StaticDecode, type TLiteral } from '@sinclair/typebox';
import { strict, type ConfigCheck, type PathSegment } from '../config/fields.js';
import { parsePattern, type Segment } from './pattern.js';

export const HTTP_METHODS = [
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'PATCH',
  'DELETE',
  'OPTIONS',
  'TRACE',
  'CONNECT',
] as const;
export type HttpMethod = (typeof HTTP_METHODS)[number];

export const RouteName = Type.String({
  pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]*$',
  description: 'unique route name',
  errorMessage: 'must be a name of letters, digits, "_", ".", ":" and "-", starting with a letter or digit',
});

export const RouteMatch = Type.Object(
  {
    host: Type.Optional(
      Type.String({
        pattern:
          '^(\\*\\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$',
        description: 'exact host, or *.suffix; absent = any host',
        errorMessage:
          'must be a host name such as "api.example.com", or "*." and a domain such as "*.example.com" (no port)',
      }),
    ),
    path: Type.String({
      pattern: '^/',
      description: 'path pattern: `*` is one segment, `**` (last) any rest of the path',
      errorMessage: 'must be a path pattern starting with "/", such as "/api/orders/*"',
    }),
    methods: Type.Optional(
      Type.Array(Type.Union(HTTP_METHODS.map((m) => Type.Literal(m)) as TLiteral<HttpMethod>[]), {
        minItems: 1,
        uniqueItems: true,
        description: 'absent = all methods',
      }),
    ),
  },
  strict,
);

export const RouteService = Type.String({ description: 'name of a service in `services`' });

export const StripPrefix = Type.String({
  pattern: '^/',
  description: 'removed from the start of the path before proxying',
  errorMessage: 'must be a path starting with "/", such as "/api"',
});

/** Route names unique, services known, patterns and prefixes valid, no two routes alike. */
export const checkRoutes: ConfigCheck = (config, report) => {
  const services = config.keys('services');
  const parsed: Array<Segment[] | null> = [];
  const matches: Array<StaticDecode<typeof RouteMatch> | undefined> = [];
  const names = new Map<string, number>();
  const count = config.length('routes');
  for (let i = 0; i < count; i++) {
    parsed.push(null);
    const route = (...rest: PathSegment[]) => ['routes', i, ...rest];
    const name = config.valid(RouteName, ...route('name'));
    const service = config.valid(RouteService, ...route('service'));
    const path = config.valid(RouteMatch.properties.path, ...route('match', 'path'));
    const match = config.valid(RouteMatch, ...route('match'));
    const stripPrefix = config.valid(StripPrefix, ...route('stripPrefix'));
    matches.push(match);
    if (name !== undefined) {
      const seen = names.get(name);
      if (seen !== undefined) {
        report(route('name'), `must be unique: "${name}" is also the name of routes[${seen}]`);
      } else names.set(name, i);
    }
    if (services && service !== undefined && !services.includes(service)) {
      report(
        route('service'),
        `names an unknown service "${service}" ` +
          (services.length > 0 ? `(expected one of: ${services.join(', ')})` : '(no services are defined)'),
      );
    }
    if (path === undefined) continue;
    const pattern = parsePattern(path);
    if (!pattern.ok) {
      report(route('match', 'path'), `invalid pattern "${path}": ${pattern.reason}`);
      continue;
    }
    if (stripPrefix !== undefined) {
      const reason = stripPrefixProblem(stripPrefix, path, pattern.segments);
      if (reason) report(route('stripPrefix'), reason);
    }
    if (match === undefined) continue;
    parsed[i] = pattern.segments;
    for (let j = 0; j < i; j++) {
      const other = matches[j];
      const otherSegments = parsed[j];
      if (!other || !otherSegments) continue;
      if (
        (other.host ?? '').toLowerCase() === (match.host ?? '').toLowerCase() &&
        sameSegments(otherSegments, pattern.segments) &&
        methodsClash(other.methods, match.methods)
      ) {
        const otherName = config.valid(RouteName, 'routes', j, 'name');
        report(
          route('match'),
          `matches the same requests as routes[${j}]${otherName === undefined ? '' : ` ("${otherName}")`}; ` +
            'make the host, path or methods differ',
        );
      }
    }
  }
};

const sameSegments = (a: Segment[], b: Segment[]) =>
  a.length === b.length &&
  a.every((s, i) => {
    const t = b[i];
    return (
      t !== undefined &&
      s.kind === t.kind &&
      (s.kind !== 'literal' || (t.kind === 'literal' && s.value === t.value))
    );
  });

/**
 * Two routes on the same host and path are ambiguous only when both take all methods or they
 * list a method in common. One listing methods and one taking all is fine: the router prefers
 * the route that lists the request's method (router.ts), the other takes the rest.
 */
const methodsClash = (a: readonly string[] | undefined, b: readonly string[] | undefined) =>
  a === undefined || b === undefined ? a === b : a.some((m) => b.includes(m));

/**
 * The prefix must be whole literal segments at the start of the pattern, so that every path the
 * route matches starts with it (the proxy strips it by length). A trailing slash is ignored:
 * `/api/` strips the same as `/api`.
 */
function stripPrefixProblem(prefix: string, path: string, segments: Segment[]): string | null {
  if (prefix === '/') return 'must not be "/", which strips nothing; remove it';
  const parsed = parsePattern(prefix);
  if (!parsed.ok) return `"${prefix}" is not a valid path prefix: ${parsed.reason}`;
  const parts = parsed.segments;
  const last = parts[parts.length - 1];
  if (parts.length > 1 && last?.kind === 'literal' && last.value === '') parts.pop();
  const literal = parts.every((seg, i) => {
    const own = segments[i];
    return seg.kind === 'literal' && own?.kind === 'literal' && own.value === seg.value;
  });
  return literal
    ? null
    : `must be whole literal segments at the start of match.path ("${path}"); "${prefix}" is not`;
}
