/** Key lifecycle shared by `gatehouse keys` and the admin `/keys` endpoints. */
import { parseDuration } from '../../config/units.js';
import type { ApiKeyRecord, KeyRepository } from '../../stores/database.js';
import { generateKey, hashKey } from './format.js';

/** What may be shown about a key: never its hash, never the key. */
export type KeyView = {
  id: string;
  name: string;
  tier: string;
  roles: string[];
  createdAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  lastUsedAt: string | null;
};

export function viewOf(k: ApiKeyRecord): KeyView {
  return {
    id: k.id,
    name: k.name,
    tier: k.tier,
    roles: [...k.roles],
    createdAt: k.createdAt.toISOString(),
    expiresAt: k.expiresAt?.toISOString() ?? null,
    revokedAt: k.revokedAt?.toISOString() ?? null,
    lastUsedAt: k.lastUsedAt?.toISOString() ?? null,
  };
}

export type NewKeyRequest = {
  name: string;
  tier: string;
  roles?: readonly string[];
  /** an absolute expiry */
  expiresAt?: Date | null;
  /** expires this long after the database's now (wins over `expiresAt`) */
  lifetimeMs?: number;
};

/** Stores a new key; the record's instants are the database's. `createdAt`: tests only. */
export async function createKey(
  repo: KeyRepository,
  serverSecret: string,
  req: NewKeyRequest,
  createdAt?: Date,
): Promise<{ key: string; record: KeyView }> {
  const { id, key } = generateKey();
  const stored = await repo.insert({
    id,
    name: req.name,
    tier: req.tier,
    roles: [...(req.roles ?? [])],
    hash: hashKey(serverSecret, key),
    expiresAt: req.expiresAt ?? null,
    ...(req.lifetimeMs === undefined ? {} : { lifetimeMs: req.lifetimeMs }),
    ...(createdAt === undefined ? {} : { createdAt }),
  });
  return { key, record: viewOf(stored) };
}

export type Rotation =
  | { kind: 'rotated'; key: string; record: KeyView; previous: KeyView }
  | { kind: 'not_found' }
  | { kind: 'refused'; reason: 'revoked' | 'rotated' | 'expired'; message: string };

/**
 * A new key with the old one's name, tier, roles and expiry; the old key stays valid for
 * `graceMs` (0 = revoked now). One transaction: concurrent rotations of one key make one new
 * key, and a failure leaves nothing behind. A revoked, already rotated or expired key is refused
 * (an expired key's replacement would be born expired: create a new key instead).
 */
export async function rotateKey(
  repo: KeyRepository,
  serverSecret: string,
  id: string,
  graceMs: number,
): Promise<Rotation> {
  const { id: newId, key } = generateKey();
  const result = await repo.rotate(id, { id: newId, hash: hashKey(serverSecret, key) }, graceMs);
  switch (result.kind) {
    case 'rotated':
      return { kind: 'rotated', key, record: viewOf(result.created), previous: viewOf(result.previous) };
    case 'not_found':
      return result;
    case 'expired':
      return {
        kind: 'refused',
        reason: 'expired',
        message: `key ${id} expired at ${result.at.toISOString()}: create a new key instead`,
      };
    case 'revoked':
      return result.at.getTime() <= result.dbTime
        ? { kind: 'refused', reason: 'revoked', message: `key ${id} is revoked` }
        : {
            kind: 'refused',
            reason: 'rotated',
            message: `key ${id} was already rotated (valid until ${result.at.toISOString()}): rotate its replacement`,
          };
  }
}

/**
 * A lifetime or grace period as `gatehouse keys` and the admin API take it: a duration with its
 * unit (`30m`, `24h`, `90d`), a number of milliseconds (JSON), or `0` alone: zero needs no unit,
 * and `--grace 0` (the old key revoked at once) is how people write it. Any other number without
 * a unit stays refused in a string: `24` could mean hours as well as milliseconds.
 * Throws a RangeError on anything else.
 */
export function parseKeyDuration(value: string | number): number {
  return typeof value === 'string' && value.trim() === '0' ? 0 : parseDuration(value);
}
