/** Key lifecycle shared by `gatehouse keys` and the admin `/keys` endpoints. */
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
  expiresAt?: Date | null;
};

export async function createKey(
  repo: KeyRepository,
  serverSecret: string,
  req: NewKeyRequest,
  now = new Date(),
): Promise<{ key: string; record: KeyView }> {
  const { id, key } = generateKey();
  const record = {
    id,
    name: req.name,
    tier: req.tier,
    roles: [...(req.roles ?? [])],
    hash: hashKey(serverSecret, key),
    createdAt: now,
    expiresAt: req.expiresAt ?? null,
  };
  await repo.insert(record);
  return { key, record: viewOf({ ...record, revokedAt: null, lastUsedAt: null }) };
}

/**
 * A new key with the old one's name, tier, roles and expiry; the old key stays valid for
 * `graceMs` (0 = revoked now). null: unknown or already revoked key.
 */
export async function rotateKey(
  repo: KeyRepository,
  serverSecret: string,
  id: string,
  graceMs: number,
  now = new Date(),
): Promise<{ key: string; record: KeyView; previous: KeyView } | null> {
  const old = await repo.get(id);
  if (old === null || (old.revokedAt !== null && old.revokedAt.getTime() <= now.getTime())) return null;
  const created = await createKey(
    repo,
    serverSecret,
    { name: old.name, tier: old.tier, roles: old.roles, expiresAt: old.expiresAt },
    now,
  );
  const previous = await repo.revoke(id, new Date(now.getTime() + graceMs));
  return { ...created, previous: viewOf(previous ?? old) };
}

export const NAME_PATTERN = /^[\w .@:-]{1,100}$/;
export const TIER_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;
export const ROLE_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;
