/**
 * A transform's value (`"${consumer.id}"`, `"tier-${consumer.tier}"`), compiled once per route
 * into a string (no placeholder) or a small function of the request. A value made from request
 * input that holds a control character (CR, LF, NUL...) is dropped whole, never sent: a client
 * cannot smuggle a header line through `${header.NAME}` or a JWT claim. An empty value is
 * dropped too (the header or parameter is then not sent).
 */
import { claim } from '../../auth/jwt/verifier.js';
import type { RequestContext } from '../stage.js';

/** A value of the request, or '' when the request has none. */
type Getter = (ctx: RequestContext) => string;

/** null: the value is dropped (empty, or it would not be a valid header value) */
export type Template = string | ((ctx: RequestContext) => string | null);

/** whether `s` holds a control character other than tab (CR, LF, NUL...): no header value may */
function unsafe(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if ((c < 0x20 && c !== 0x09) || c === 0x7f) return true;
  }
  return false;
}

export function compileTemplate(value: string): Template {
  const parts = value.split(/\$\{([^}]*)\}/);
  if (parts.length === 1) return value;
  const pieces: Array<string | Getter> = [];
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i] as string;
    if (i % 2 === 0) {
      if (p !== '') pieces.push(p);
    } else pieces.push(getter(p));
  }
  return (ctx) => {
    let out = '';
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i] as string | Getter;
      out += typeof piece === 'string' ? piece : piece(ctx);
    }
    return out === '' || unsafe(out) ? null : out;
  };
}

/** Evaluates a compiled template. */
export function render(t: Template, ctx: RequestContext): string | null {
  return typeof t === 'string' ? t : t(ctx);
}

/** The getter of a placeholder the config check accepted (router/policy-config.ts). */
function getter(name: string): Getter {
  switch (name) {
    case 'consumer.id':
      return (ctx) => ctx.consumer?.id ?? '';
    case 'consumer.tier':
      return (ctx) => ctx.consumer?.tier ?? '';
    case 'route.name':
      return (ctx) => ctx.route.name;
    case 'request.id':
      return (ctx) => ctx.requestId;
    case 'client.ip':
      return (ctx) => ctx.clientIp;
  }
  if (name.startsWith('header.')) {
    const header = name.slice(7).toLowerCase();
    return (ctx) => {
      const v = ctx.req.headers[header];
      return v === undefined ? '' : typeof v === 'string' ? v : v.join(', ');
    };
  }
  if (name.startsWith('jwt.claim.')) {
    const path = name.slice(10);
    return (ctx) => {
      // claims are kept only by the JWT authenticator, and only for a verified token
      const claims = ctx.consumer?.claims;
      return claims === undefined ? '' : claimText(claim(claims, path));
    };
  }
  throw new Error(`unknown placeholder \${${name}}`); // refused by the config check
}

function claimText(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v.join(', ');
  return '';
}
