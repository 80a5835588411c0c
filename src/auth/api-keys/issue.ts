/**
 * What a new key may be: the rules `gatehouse keys create|rotate` and the admin `/keys`
 * endpoints both apply, so that a key one of them refuses is refused by the other too. Each
 * surface decodes its own input (flags, JSON) and names the field its own way (`--tier`,
 * `tier`); the checks and their wording are here.
 */
import { parseKeyDuration } from './manage.js';

const NAME_PATTERN = /^[\w .@:-]{1,100}$/;
const TIER_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;
const ROLE_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

/** the longest lifetime, grace or time to an expiry a key may be given */
export const MAX_KEY_LIFETIME_MS = 10 * 365 * 86_400_000;

/** The part of the config that limits which tiers and roles a key may name. */
export type KeyNames = {
  rateLimit: { tiers: Readonly<Record<string, unknown>> };
  rbac: { roles: Readonly<Record<string, unknown>> };
};

export type KeyField = 'name' | 'tier' | 'roles' | 'lifetime' | 'expiresAt';

/**
 * A refused field. `message` does not name the field (each surface prefixes its name for it);
 * `configured` lists the names the config allows when the value is not one of them.
 */
export class KeyInputError extends Error {
  constructor(
    readonly field: KeyField,
    readonly reason: 'malformed' | 'unknown' | 'out_of_range',
    message: string,
    readonly configured: readonly string[] = [],
  ) {
    super(message);
    this.name = 'KeyInputError';
  }
}

export type NewKeyFields = { name: string; tier: string; roles: string[] };

/**
 * Name, tier and roles of a new key, in that order (the first refused field throws). A config
 * without tiers (or without roles) accepts any well-formed one: the keys may be issued before
 * the tiers are configured.
 */
export function checkNewKey(
  input: { name: unknown; tier: unknown; roles: unknown },
  names: KeyNames,
): NewKeyFields {
  const { name, tier, roles } = input;
  if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
    throw new KeyInputError('name', 'malformed', '1 to 100 letters, digits, spaces or _.@:-');
  }
  if (typeof tier !== 'string' || !TIER_PATTERN.test(tier)) {
    throw new KeyInputError('tier', 'malformed', 'letters, digits or _.-');
  }
  const tiers = Object.keys(names.rateLimit.tiers);
  if (tiers.length > 0 && !tiers.includes(tier)) {
    throw new KeyInputError('tier', 'unknown', `unknown tier "${tier}"`, tiers);
  }
  if (!Array.isArray(roles)) throw new KeyInputError('roles', 'malformed', 'an array of role names');
  for (const r of roles as unknown[]) {
    if (typeof r !== 'string') throw new KeyInputError('roles', 'malformed', 'an array of role names');
    if (!ROLE_PATTERN.test(r)) throw new KeyInputError('roles', 'malformed', `invalid role name "${r}"`);
  }
  const known = Object.keys(names.rbac.roles);
  const unknown = (roles as string[]).filter((r) => !known.includes(r));
  if (known.length > 0 && unknown.length > 0) {
    throw new KeyInputError('roles', 'unknown', `unknown role(s) ${unknown.join(', ')}`, known);
  }
  return { name, tier, roles: roles as string[] };
}

/** A lifetime or grace period (see `parseKeyDuration`), from 0 to 3650 days. */
export function checkLifetime(value: unknown): number {
  let ms: number;
  try {
    if (typeof value !== 'string' && typeof value !== 'number') throw new RangeError('not a duration');
    ms = parseKeyDuration(value);
  } catch {
    throw new KeyInputError(
      'lifetime',
      'malformed',
      `invalid duration "${String(value)}" (use e.g. 0, 30m, 24h, 90d)`,
    );
  }
  if (!(ms >= 0 && ms <= MAX_KEY_LIFETIME_MS)) {
    throw new KeyInputError('lifetime', 'out_of_range', 'must be between 0 and 3650d');
  }
  return ms;
}

/** An absolute expiry: an ISO 8601 instant after `now()` (the database's), within 10 years. */
export async function checkExpiresAt(value: unknown, now: () => Promise<number>): Promise<Date> {
  const t = typeof value === 'string' ? Date.parse(value) : Number.NaN;
  if (!Number.isNaN(t)) {
    const n = await now();
    if (t > n && t <= n + MAX_KEY_LIFETIME_MS) return new Date(t);
  }
  throw new KeyInputError('expiresAt', 'malformed', 'an ISO 8601 instant in the future (within 10 years)');
}
