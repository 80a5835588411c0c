/**
 * The edge policies of a route, and their global defaults: CORS (`cors`), IP allow and deny
 * lists (`ip`), request and response transformation (`transform`), and the answers a route
 * makes itself (`respond`, `redirect`: such a route needs no service). The stages that run them
 * are under src/stages/ (cors, ip-filter, transform, respond); this module is the config file's
 * side: the schemas, and the checks across fields, each reported on the field it names.
 */
import { isIP } from 'node:net';
import { Type, type StaticDecode } from '@sinclair/typebox';
import { Duration, strict, type ConfigCheck, type PathSegment } from '../config/fields.js';
import { HTTP_METHODS } from './config.js';

/** RFC 9110 token: a header or method name */
const TOKEN = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";
/** a header value as written in the file: no control characters but tab (no CR, LF or NUL) */
const FIELD_VALUE = '^[^\\x00-\\x08\\x0a-\\x1f\\x7f]*$';

const HeaderName = (description: string) =>
  Type.String({
    pattern: TOKEN,
    description,
    errorMessage: 'must be a header name (letters, digits, "-"...)',
  });

const HeaderValue = (description: string) =>
  Type.String({
    pattern: FIELD_VALUE,
    maxLength: 8192,
    description,
    errorMessage: 'must be a header value without control characters (no CR, LF or NUL)',
  });

// ---- CORS -----------------------------------------------------------------------------------

/** `https://app.example.com`, `*`, or an anchored pattern such as `https://*.example.com` */
export const ORIGIN_PATTERN =
  '^(\\*|null|https?://(\\*\\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*(:[0-9]{1,5})?)$';

/** what an option left out means (a route's `cors` is a union, which the loader fills in no default for) */
export const CORS_DEFAULTS = {
  methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as Array<(typeof HTTP_METHODS)[number]>,
  headers: [] as string[],
  exposeHeaders: [] as string[],
  credentials: false,
  maxAgeMs: 5000,
};

export const CorsSchema = Type.Object(
  {
    origins: Type.Array(
      Type.String({
        pattern: ORIGIN_PATTERN,
        description:
          'an origin allowed to read responses: exact ("https://app.example.com"), "*" (any), or "scheme://*.domain" (any subdomain, at any depth, never the domain itself)',
        errorMessage:
          'must be an origin such as "https://app.example.com" (scheme, host, optional port; no path), "https://*.example.com", or "*"',
      }),
      {
        minItems: 1,
        uniqueItems: true,
        description: 'the origins allowed (the Origin header compares exactly)',
      },
    ),
    methods: Type.Optional(
      Type.Array(Type.Union(HTTP_METHODS.map((m) => Type.Literal(m))), {
        uniqueItems: true,
        default: CORS_DEFAULTS.methods,
        description: 'methods a preflight allows (Access-Control-Allow-Methods)',
      }),
    ),
    headers: Type.Optional(
      Type.Array(HeaderName('a request header a preflight allows, or "*" (any; not with credentials)'), {
        uniqueItems: true,
        default: [],
        description:
          'request headers a preflight allows (Access-Control-Allow-Headers); "*" = any (with credentials: those the preflight asks for)',
      }),
    ),
    exposeHeaders: Type.Optional(
      Type.Array(HeaderName('a response header the browser lets the page read'), {
        uniqueItems: true,
        default: [],
        description:
          'response headers the page may read beyond the safelisted ones (Access-Control-Expose-Headers)',
      }),
    ),
    credentials: Type.Optional(
      Type.Boolean({
        default: false,
        description:
          'the page may send cookies and credentials and read the answer (Access-Control-Allow-Credentials); the origin is then reflected, never "*"',
      }),
    ),
    maxAge: Type.Optional(Duration('5s', { zero: 'the browser does not cache the preflight' })),
  },
  { ...strict, description: 'cross-origin resource sharing: which web pages may call the route' },
);
export type CorsConfig = StaticDecode<typeof CorsSchema>;

export const RouteCors = Type.Union([CorsSchema, Type.Literal(false)], {
  description: "this route's CORS policy, instead of the top-level `cors`; false = none on this route",
});

// ---- IP allow and deny lists ---------------------------------------------------------------------

export const IpFilterSchema = Type.Object(
  {
    allow: Type.Array(Type.String({ description: 'an IPv4 or IPv6 address or CIDR' }), {
      default: [],
      description: 'when not empty, only client addresses in these CIDRs pass (403 ip_denied otherwise)',
    }),
    deny: Type.Array(Type.String({ description: 'an IPv4 or IPv6 address or CIDR' }), {
      default: [],
      description: 'client addresses in these CIDRs are refused (403 ip_denied), even when also allowed',
    }),
  },
  {
    ...strict,
    description:
      'IP allow and deny lists, on the client address (after `trustedProxies`); the top-level lists apply to every route, then the route’s own',
  },
);
export type IpFilterConfig = StaticDecode<typeof IpFilterSchema>;

// ---- transform ----------------------------------------------------------------------------------

const TEMPLATE_DOC =
  'may use ${consumer.id}, ${consumer.tier}, ${route.name}, ${request.id}, ${client.ip}, ${header.NAME}, ${jwt.claim.NAME}';

const HeaderOps = (side: 'request' | 'response') =>
  Type.Object(
    {
      add: Type.Optional(
        Type.Record(Type.String({ pattern: TOKEN }), HeaderValue(`the value; ${TEMPLATE_DOC}`), {
          description: `${side} headers added (beside any of the same name)`,
        }),
      ),
      set: Type.Optional(
        Type.Record(Type.String({ pattern: TOKEN }), HeaderValue(`the value; ${TEMPLATE_DOC}`), {
          description: `${side} headers set (replacing any of the same name)`,
        }),
      ),
      remove: Type.Optional(
        Type.Array(HeaderName(`a ${side} header removed`), {
          uniqueItems: true,
          description: `${side} headers removed`,
        }),
      ),
      rename: Type.Optional(
        Type.Record(Type.String({ pattern: TOKEN }), HeaderName('the new name'), {
          description: `${side} headers renamed (old name: new name)`,
        }),
      ),
    },
    { ...strict, description: `the ${side} headers, changed in this order: remove, rename, set, add` },
  );

const PathTemplate = (description: string) =>
  Type.String({
    pattern: '^/[^?#\\s]*$',
    description,
    errorMessage: 'must be a path starting with "/" (no query, no spaces)',
  });

export const PathRewriteSchema = Type.Object(
  {
    prefix: Type.Optional(
      Type.Object(
        {
          from: PathTemplate('the prefix (whole segments) the routed path starts with'),
          to: PathTemplate('what replaces it'),
        },
        { ...strict, description: 'replace a prefix of the path: { from: /v1, to: /api/v1 }' },
      ),
    ),
    pattern: Type.Optional(
      Type.Object(
        {
          from: PathTemplate(
            'the path, with {name} for one segment and a last {name*} for the rest: /v1/users/{id}',
          ),
          to: PathTemplate('the new path, using the names of `from`: /users/{id}'),
        },
        { ...strict, description: 'rewrite the path by a pattern with named segments' },
      ),
    ),
  },
  {
    ...strict,
    description:
      'the path the upstream gets: one of `prefix` or `pattern`; a path that does not match is sent unchanged',
  },
);

export const TransformSchema = Type.Object(
  {
    request: Type.Optional(
      Type.Object(
        {
          headers: Type.Optional(HeaderOps('request')),
          path: Type.Optional(PathRewriteSchema),
          query: Type.Optional(
            Type.Object(
              {
                add: Type.Optional(
                  Type.Record(
                    Type.String({ minLength: 1 }),
                    HeaderValue(`the value (URL-encoded when sent); ${TEMPLATE_DOC}`),
                    {
                      description: 'query parameters added',
                    },
                  ),
                ),
                remove: Type.Optional(
                  Type.Array(Type.String({ minLength: 1, description: 'a parameter name' }), {
                    uniqueItems: true,
                    description: 'query parameters removed (every occurrence)',
                  }),
                ),
              },
              { ...strict, description: 'the query string the upstream gets' },
            ),
          ),
        },
        { ...strict, description: 'what the upstream gets' },
      ),
    ),
    response: Type.Optional(
      Type.Object(
        { headers: Type.Optional(HeaderOps('response')) },
        { ...strict, description: 'what the client gets back from the upstream' },
      ),
    ),
    preserveHost: Type.Boolean({
      default: false,
      description: "send the client's Host header upstream instead of the target's host",
    }),
  },
  { ...strict, description: 'request and response transformation' },
);
export type TransformConfig = StaticDecode<typeof TransformSchema>;

// ---- respond and redirect -----------------------------------------------------------------------

export const RespondSchema = Type.Object(
  {
    status: Type.Integer({ minimum: 200, maximum: 599, default: 200, description: 'the status code' }),
    body: Type.String({ default: '', maxLength: 1048576, description: 'the body, as written' }),
    contentType: Type.String({
      pattern: FIELD_VALUE,
      default: 'text/plain; charset=utf-8',
      description: 'the Content-Type of the body',
    }),
    headers: Type.Optional(
      Type.Record(Type.String({ pattern: TOKEN }), HeaderValue('a header value, as written'), {
        description: 'more response headers (Retry-After, Cache-Control...)',
      }),
    ),
  },
  {
    ...strict,
    description: 'the route answers every request with this fixed response (a maintenance page); no service',
  },
);
export type RespondConfig = StaticDecode<typeof RespondSchema>;

export const REDIRECT_STATUSES = [301, 302, 303, 307, 308] as const;

export const RedirectSchema = Type.Object(
  {
    to: Type.String({
      pattern: '^(https?://[^\\s]+|/[^\\s]*)$',
      description:
        'the Location: an absolute URL or a path; ${request.path} is the request path, ${request.query} its query with "?" (or nothing)',
      errorMessage:
        'must be an http(s) URL or a path starting with "/", such as "https://new.example.com${request.path}${request.query}"',
    }),
    status: Type.Union(
      REDIRECT_STATUSES.map((s) => Type.Literal(s)),
      { default: 308, description: '301, 302, 303, 307 or 308 (308: permanent, keeps the method and body)' },
    ),
  },
  { ...strict, description: 'the route answers every request with a redirect (a moved API); no service' },
);
export type RedirectConfig = StaticDecode<typeof RedirectSchema>;

// ---- what the gateway owns -----------------------------------------------------------------------

/**
 * Request headers the gateway sets or frames itself: a transform may not add, set, remove or
 * rename them (the upstream relies on them being the gateway's).
 */
export function gatewayOwnedRequestHeader(name: string): boolean {
  const n = name.toLowerCase();
  return (
    OWNED_REQUEST.has(n) ||
    n.startsWith('x-forwarded-') ||
    n.startsWith('x-consumer-') ||
    OWNED_FRAMING.has(n)
  );
}

/** Response headers that frame the answer or that the gateway sets on it. */
export function gatewayOwnedResponseHeader(name: string): boolean {
  const n = name.toLowerCase();
  return OWNED_FRAMING.has(n) || n === 'x-request-id';
}

const OWNED_REQUEST = new Set([
  'host',
  'forwarded',
  'x-real-ip',
  'x-request-id',
  'traceparent',
  'tracestate',
]);
const OWNED_FRAMING = new Set([
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'upgrade',
  'te',
  'trailer',
  'proxy-connection',
]);

// ---- checks ---------------------------------------------------------------------------------------

/** The placeholders a transform value may use. */
export const TEMPLATE_VARIABLE =
  /^(consumer\.id|consumer\.tier|route\.name|request\.id|client\.ip|header\.[!#$%&'*+.^_`|~0-9A-Za-z-]+|jwt\.claim\.[^\s{}]+)$/;

/** `${...}` placeholders of a value, or the first unknown one. */
export function templateProblem(value: string, known: RegExp = TEMPLATE_VARIABLE): string | null {
  for (const m of value.matchAll(/\$\{([^}]*)\}/g)) {
    if (!known.test(m[1] ?? '')) return `"\${${m[1]}}" is not a known placeholder`;
  }
  return null;
}

/** The {name} and {name*} segments of a path pattern, or a problem. */
export function patternNames(pattern: string): { names: string[] } | { problem: string } {
  const names: string[] = [];
  const segments = pattern.split('/').slice(1);
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i] as string;
    if (!seg.includes('{') && !seg.includes('}')) continue;
    const m = /^\{([A-Za-z_][A-Za-z0-9_]*)(\*?)\}$/.exec(seg);
    if (m === null) return { problem: `"${seg}": a placeholder must be a whole segment, {name} or {name*}` };
    if (m[2] === '*' && i !== segments.length - 1) return { problem: `{${m[1]}*} must be the last segment` };
    if (names.includes(m[1] as string)) return { problem: `{${m[1]}} appears twice` };
    names.push(m[1] as string);
  }
  return { names };
}

const ROUTE_FIELDS = {
  cors: RouteCors,
  ip: IpFilterSchema,
  transform: TransformSchema,
  respond: RespondSchema,
  redirect: RedirectSchema,
};

/** CIDRs valid, no gateway-owned header touched, placeholders known, respond/redirect/service coherent. */
export const checkPolicy: ConfigCheck = (config, report) => {
  checkIp(config.valid(IpFilterSchema, 'ip'), ['ip'], report);
  checkCors(config.valid(CorsSchema, 'cors'), ['cors'], report);
  const count = config.length('routes');
  for (let i = 0; i < count; i++) {
    const at = (...rest: PathSegment[]) => ['routes', i, ...rest];
    const cors = config.valid(ROUTE_FIELDS.cors, ...at('cors'));
    if (cors !== undefined && cors !== false) checkCors(cors, at('cors'), report);
    checkIp(config.valid(ROUTE_FIELDS.ip, ...at('ip')), at('ip'), report);
    const transform = config.valid(ROUTE_FIELDS.transform, ...at('transform'));
    if (transform !== undefined) {
      checkTransform(transform, at('transform'), report);
      if (transform.request?.path !== undefined && config.has(...at('stripPrefix')))
        report(
          at('transform', 'request', 'path'),
          'cannot be used with `stripPrefix`: rewrite the whole path here (prefix: { from: <stripPrefix>, to: / } strips it)',
        );
    }
    const respond = config.has(...at('respond'));
    const redirect = config.has(...at('redirect'));
    // `services` (weighted routing) stands for `service` here: router/split-config.ts checks it
    const serviceKey = config.has(...at('service'))
      ? 'service'
      : config.has(...at('services'))
        ? 'services'
        : null;
    if (respond && redirect)
      report(at('redirect'), 'cannot be used with `respond`: a route answers with one or the other');
    if ((respond || redirect) && serviceKey !== null)
      report(
        at(serviceKey),
        `must not be set with \`${respond ? 'respond' : 'redirect'}\`: the route answers itself and never proxies`,
      );
    if (!respond && !redirect && serviceKey === null)
      report(
        at('service'),
        'is required (or `services`), unless the route answers itself (`respond` or `redirect`)',
      );
    if ((respond || redirect) && transform !== undefined)
      report(at('transform'), 'has no effect on a route that answers itself (`respond` or `redirect`)');
    const fixed = config.valid(ROUTE_FIELDS.respond, ...at('respond'));
    if (fixed !== undefined) {
      if ((fixed.status === 204 || fixed.status === 304) && fixed.body !== '')
        report(at('respond', 'body'), `must be empty: a ${fixed.status} has no body`);
      for (const name of Object.keys(fixed.headers ?? {})) {
        if (gatewayOwnedResponseHeader(name) || name.toLowerCase() === 'content-type')
          report(
            at('respond', 'headers', name),
            name.toLowerCase() === 'content-type'
              ? 'is set by `contentType`'
              : `"${name}" is set by the gateway and cannot be given here`,
          );
      }
    }
    const to = config.valid(ROUTE_FIELDS.redirect, ...at('redirect'))?.to;
    if (to !== undefined) {
      const p = templateProblem(to, /^request\.(path|query)$/);
      if (p !== null) report(at('redirect', 'to'), `${p} (use \${request.path} or \${request.query})`);
    }
  }
};

function checkCors(
  cors: CorsConfig | undefined,
  at: PathSegment[],
  report: (p: PathSegment[], m: string) => void,
) {
  if (cors === undefined) return;
  if (cors.credentials === true && (cors.headers ?? []).includes('*'))
    report(
      [...at, 'headers'],
      '"*" means any header only without credentials; with `credentials: true` list the headers',
    );
  cors.origins.forEach((o, j) => {
    if (o === '*' && cors.origins.length > 1)
      report([...at, 'origins', j], '"*" allows every origin: the other entries are redundant, remove them');
  });
}

function checkIp(
  ip: IpFilterConfig | undefined,
  at: PathSegment[],
  report: (p: PathSegment[], m: string) => void,
) {
  if (ip === undefined) return;
  for (const list of ['allow', 'deny'] as const) {
    ip[list].forEach((entry, j) => {
      const problem = cidrProblem(entry);
      if (problem !== null) report([...at, list, j], problem);
    });
  }
}

/** null when `entry` is an address or CIDR (IPv4, IPv6, IPv4-mapped IPv6). */
export function cidrProblem(entry: string): string | null {
  const [addr = '', bits, extra] = entry.split('/');
  const family = isIP(addr);
  if (family === 0 || extra !== undefined) return `"${entry}" is not an IP address or CIDR`;
  if (bits === undefined) return null;
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > (family === 4 ? 32 : 128))
    return `"${entry}": invalid prefix length (at most ${family === 4 ? 32 : 128})`;
  return null;
}

function checkTransform(
  t: TransformConfig,
  at: PathSegment[],
  report: (p: PathSegment[], m: string) => void,
) {
  const sides = [
    ['request', t.request?.headers, gatewayOwnedRequestHeader],
    ['response', t.response?.headers, gatewayOwnedResponseHeader],
  ] as const;
  for (const [side, ops, owned] of sides) {
    if (ops === undefined) continue;
    const here = (...rest: PathSegment[]) => [...at, side, 'headers', ...rest];
    const why = (name: string) =>
      `"${name}" is set by the gateway and cannot be changed by a transform` +
      (name.toLowerCase() === 'host' ? ' (use `preserveHost` to send the client’s Host)' : '');
    for (const op of ['add', 'set', 'rename'] as const) {
      for (const [name, value] of Object.entries(ops[op] ?? {})) {
        if (owned(name)) report(here(op, name), why(name));
        if (op === 'rename' && owned(value)) report(here(op, name), why(value));
        if (op !== 'rename') {
          const p = templateProblem(value);
          if (p !== null) report(here(op, name), p);
        }
      }
    }
    (ops.remove ?? []).forEach((name, j) => {
      if (owned(name)) report(here('remove', j), why(name));
    });
  }
  const path = t.request?.path;
  if (path !== undefined) {
    const here = (...rest: PathSegment[]) => [...at, 'request', 'path', ...rest];
    if ((path.prefix === undefined) === (path.pattern === undefined))
      report(here(), 'must have exactly one of `prefix` or `pattern`');
    if (path.pattern !== undefined) {
      const from = patternNames(path.pattern.from);
      const to = patternNames(path.pattern.to);
      if ('problem' in from) report(here('pattern', 'from'), from.problem);
      if ('problem' in to) report(here('pattern', 'to'), to.problem);
      if ('names' in from && 'names' in to) {
        for (const n of to.names)
          if (!from.names.includes(n))
            report(here('pattern', 'to'), `{${n}} is not a placeholder of \`from\``);
      }
    }
  }
  for (const [name, value] of Object.entries(t.request?.query?.add ?? {})) {
    const p = templateProblem(value);
    if (p !== null) report([...at, 'request', 'query', 'add', name], p);
  }
}
