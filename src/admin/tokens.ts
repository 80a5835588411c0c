/**
 * Who calls the admin API. Tokens come from `admin.token` (id `admin`, role `admin`),
 * `admin.readToken` (id `read`, role `read`) and `admin.tokens` (each with its own id and role).
 * The id is what the audit log records: never the secret. A `read` token may call what changes
 * nothing; a mutating endpoint answers it 403 `read_only_token`.
 *
 * The presented token is compared with every configured one, always all of them, by SHA-256
 * digest with `timingSafeEqual`: neither the time taken nor an early exit tells how much of a
 * token matched, or which one.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

export type AdminRole = 'admin' | 'read';
export type AdminCaller = { readonly id: string; readonly role: AdminRole };

export type AdminTokenSettings = {
  readonly token: string;
  readonly readToken?: string | undefined;
  readonly tokens?: ReadonlyArray<{ readonly id: string; readonly token: string; readonly role: AdminRole }>;
};

type Known = { id: string; role: AdminRole; digest: Buffer };

/** no token configured (loopback only, checked by the config): every caller is the admin */
export const ANONYMOUS_ADMIN: AdminCaller = Object.freeze({ id: 'anonymous', role: 'admin' });

const compiled = new WeakMap<AdminTokenSettings, Known[]>();

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

function known(settings: AdminTokenSettings): Known[] {
  let list = compiled.get(settings);
  if (list === undefined) {
    list = [];
    if (settings.token !== '') list.push({ id: 'admin', role: 'admin', digest: digest(settings.token) });
    if (settings.readToken !== undefined && settings.readToken !== '')
      list.push({ id: 'read', role: 'read', digest: digest(settings.readToken) });
    for (const t of settings.tokens ?? [])
      if (t.token !== '') list.push({ id: t.id, role: t.role, digest: digest(t.token) });
    compiled.set(settings, list);
  }
  return list;
}

/** Whether any token is configured (else the admin port is open, on loopback only). */
export function tokensConfigured(settings: AdminTokenSettings): boolean {
  return known(settings).length > 0;
}

/**
 * The credentials of `Authorization: Bearer <token>`, or '' when there are none. The scheme is
 * case-insensitive (RFC 9110 §11.1: `bearer`, `BEARER`); one or more spaces follow it.
 */
export function bearerCredentials(header: string | undefined): string {
  if (header === undefined || header.length < 7) return '';
  if (header.slice(0, 7).toLowerCase() !== 'bearer ') return '';
  return header.slice(7).trimStart();
}

/** The caller `authorization` identifies, or null (no token, or no configured token matches). */
export function identify(
  settings: AdminTokenSettings,
  authorization: string | undefined,
): AdminCaller | null {
  const list = known(settings);
  if (list.length === 0) return ANONYMOUS_ADMIN;
  const presented = bearerCredentials(authorization);
  const d = digest(presented);
  let found: Known | null = null;
  // every token is compared, a match or not: the time taken does not depend on which matched
  for (const k of list) if (timingSafeEqual(d, k.digest) && found === null) found = k;
  if (found === null || presented === '') return null;
  return { id: found.id, role: found.role };
}
