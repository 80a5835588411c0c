/**
 * API key format: `gh_<id>_<secret>`. The id (12 base62 characters) names the stored record;
 * the secret (43 base62 characters, ~256 bits from crypto.randomBytes) is never stored: the
 * record holds HMAC-SHA-256(server secret, full key) in hex, compared in constant time.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export const KEY_PREFIX = 'gh_';
export const ID_LENGTH = 12;
export const SECRET_LENGTH = 43;
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
/** anything else is malformed: no lookup is made for it */
const KEY_PATTERN = /^gh_([0-9A-Za-z]{12})_([0-9A-Za-z]{32,64})$/;
export const ID_PATTERN = /^[0-9A-Za-z]{12}$/;

/** Uniform base62 characters by rejection sampling (bytes ≥ 248 are skipped: no modulo bias). */
export function randomBase62(length: number): string {
  let out = '';
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte >= 248) continue;
      out += ALPHABET[byte % 62];
      if (out.length === length) break;
    }
  }
  return out;
}

export type GeneratedKey = { readonly id: string; readonly key: string };

export function generateKey(): GeneratedKey {
  const id = randomBase62(ID_LENGTH);
  return { id, key: `${KEY_PREFIX}${id}_${randomBase62(SECRET_LENGTH)}` };
}

/** The id part of a well-formed key, or null. */
export function parseKey(key: string): { id: string } | null {
  if (key.length > 80) return null;
  const m = KEY_PATTERN.exec(key);
  return m ? { id: m[1] as string } : null;
}

export function hashKey(serverSecret: string, key: string): string {
  return createHmac('sha256', serverSecret).update(key).digest('hex');
}

/** Constant-time comparison of the key's HMAC with a stored hex hash. */
export function keyMatches(serverSecret: string, key: string, storedHash: string): boolean {
  const actual = createHmac('sha256', serverSecret).update(key).digest();
  const expected = Buffer.from(storedHash, 'hex');
  return expected.length === actual.length && timingSafeEqual(actual, expected);
}
