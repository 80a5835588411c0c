/**
 * A CORS policy compiled once, and the pure decisions of the Fetch standard's CORS protocol
 * (https://fetch.spec.whatwg.org/#http-cors-protocol) the gateway makes for it:
 *
 * - an origin is allowed when it equals an entry, when the policy allows `*`, or when it matches
 *   a pattern `scheme://*.domain[:port]` (one or more whole DNS labels before the domain, the
 *   scheme and port exact: never `scheme://domain` itself, `https://domain.evil.com` or
 *   `https://evil.com/.domain`);
 * - a disallowed origin gets no CORS header at all (the browser then refuses the page access);
 * - with credentials the allowed origin is reflected, never `*` (a browser refuses `*` with
 *   credentials; `*` then never allows the opaque origin `null`), and a `*` list of headers
 *   becomes the headers the preflight asks for;
 * - `Vary: Origin` whenever the answer depends on the Origin (anything but a bare `*` policy),
 *   on every response, those without an Origin too, so a cache never serves one origin's answer
 *   to another.
 */
import { CORS_DEFAULTS, type CorsConfig } from '../../router/policy-config.js';

/** RFC 9110 token, for a requested header list echoed back */
const TOKEN_LIST = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+(\s*,\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+)*$/;

export class CorsPolicy {
  private readonly exact: ReadonlySet<string>;
  private readonly patterns: readonly RegExp[];
  readonly any: boolean;
  readonly credentials: boolean;
  /** the answers depend on the Origin header: Vary: Origin */
  readonly varies: boolean;
  private readonly methods: string;
  /** the Access-Control-Allow-Headers value; null: echo the requested ones (`*` with credentials) */
  private readonly allowHeaders: string | null;
  private readonly exposeHeaders: string;
  private readonly maxAge: string;

  constructor(config: CorsConfig) {
    const exact = new Set<string>();
    const patterns: RegExp[] = [];
    let any = false;
    for (const origin of config.origins) {
      if (origin === '*') any = true;
      else if (origin.includes('://*.')) patterns.push(originPattern(origin));
      else exact.add(origin.toLowerCase());
    }
    this.exact = exact;
    this.patterns = patterns;
    this.any = any;
    const credentials = (this.credentials = config.credentials ?? CORS_DEFAULTS.credentials);
    this.varies = !any || credentials;
    this.methods = (config.methods ?? CORS_DEFAULTS.methods).join(', ');
    const headers = config.headers ?? CORS_DEFAULTS.headers;
    this.allowHeaders = headers.includes('*') && credentials ? null : headers.join(', ');
    this.exposeHeaders = (config.exposeHeaders ?? CORS_DEFAULTS.exposeHeaders).join(', ');
    this.maxAge = String(Math.floor((config.maxAge ?? CORS_DEFAULTS.maxAgeMs) / 1000));
  }

  allows(origin: string): boolean {
    // an opaque origin (sandboxed frame, file:, some redirects) is no site to trust with credentials
    if (this.any) return !this.credentials || origin !== 'null';
    if (this.exact.has(origin)) return true;
    const patterns = this.patterns;
    for (let i = 0; i < patterns.length; i++) if ((patterns[i] as RegExp).test(origin)) return true;
    return false;
  }

  /** The value of Access-Control-Allow-Origin for an allowed origin. */
  private allowOrigin(origin: string): string {
    return this.any && !this.credentials ? '*' : origin;
  }

  /**
   * The CORS headers of an actual (non-preflight) request's answer from `origin`, or null when
   * the origin is not allowed (Vary aside, see `varies`).
   */
  actual(origin: string): string[] | null {
    if (!this.allows(origin)) return null;
    const out = ['access-control-allow-origin', this.allowOrigin(origin)];
    if (this.credentials) out.push('access-control-allow-credentials', 'true');
    if (this.exposeHeaders !== '') out.push('access-control-expose-headers', this.exposeHeaders);
    return out;
  }

  /**
   * The headers of the answer to a preflight from `origin` (the 204 the gateway sends itself):
   * the CORS headers when the origin is allowed, else none but Vary. The method and headers
   * asked for are not matched here: the lists are sent as configured and the browser compares
   * (so the answer is the same for every preflight of an origin, and caches well).
   */
  preflight(origin: string, requestHeaders: string | undefined): string[] {
    const out: string[] = [
      'vary',
      this.varies
        ? 'Origin, Access-Control-Request-Method, Access-Control-Request-Headers'
        : 'Access-Control-Request-Method, Access-Control-Request-Headers',
    ];
    if (!this.allows(origin)) return out;
    out.push('access-control-allow-origin', this.allowOrigin(origin));
    if (this.credentials) out.push('access-control-allow-credentials', 'true');
    out.push('access-control-allow-methods', this.methods);
    const headers =
      this.allowHeaders ??
      (requestHeaders !== undefined && TOKEN_LIST.test(requestHeaders.trim()) ? requestHeaders.trim() : '');
    if (headers !== '') out.push('access-control-allow-headers', headers);
    out.push('access-control-max-age', this.maxAge);
    return out;
  }
}

/** `https://*.example.com:8443` → an anchored RegExp: one or more labels in place of `*` */
export function originPattern(pattern: string): RegExp {
  const star = pattern.indexOf('://*.');
  const scheme = pattern.slice(0, star).toLowerCase();
  const rest = pattern.slice(star + 5).toLowerCase();
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  return new RegExp(`^${escape(scheme)}://([a-z0-9]([a-z0-9-]*[a-z0-9])?\\.)+${escape(rest)}$`);
}

/**
 * `headers` (a flat list) with `Origin` in its Vary: added, merged into an existing Vary, or
 * left alone when Vary is `*` or already names Origin.
 */
export function varyOrigin(headers: string[]): void {
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i] as string;
    if (name.length !== 4 || name.toLowerCase() !== 'vary') continue;
    const value = headers[i + 1] as string;
    for (const part of value.split(',')) {
      const token = part.trim().toLowerCase();
      if (token === '*' || token === 'origin') return;
    }
    headers[i + 1] = value.trim() === '' ? 'Origin' : `${value}, Origin`;
    return;
  }
  headers.push('vary', 'Origin');
}

/** Removes the upstream's own CORS headers: the route's policy answers for it. */
export function dropCorsHeaders(headers: string[]): void {
  let w = 0;
  for (let r = 0; r < headers.length; r += 2) {
    const name = headers[r] as string;
    if (name.length > 15 && name.slice(0, 15).toLowerCase() === 'access-control-') continue;
    headers[w++] = name;
    headers[w++] = headers[r + 1] as string;
  }
  headers.length = w;
}
