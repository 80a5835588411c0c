import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { generateKey, hashKey, keyMatches, parseKey, randomBase62 } from '../../src/auth/api-keys/format.js';

const SECRET = 'unit-secret-0123456789abcdef';

describe('api key format', () => {
  it('gh_<12 base62 id>_<43 base62 secret>, unique', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const { id, key } = generateKey();
      expect(key).toMatch(/^gh_[0-9A-Za-z]{12}_[0-9A-Za-z]{43}$/);
      expect(parseKey(key)).toEqual({ id });
      seen.add(key);
    }
    expect(seen.size).toBe(1000);
  });

  it('base62 characters are roughly uniform', () => {
    const counts = new Map<string, number>();
    for (const c of randomBase62(62_000)) counts.set(c, (counts.get(c) ?? 0) + 1);
    expect(counts.size).toBe(62);
    for (const n of counts.values()) {
      expect(n).toBeGreaterThan(800);
      expect(n).toBeLessThan(1200);
    }
  });

  it('malformed keys parse to null', () => {
    const { key } = generateKey();
    for (const bad of [
      '',
      'gh_',
      key.slice(0, -12), // secret too short
      key + 'x'.repeat(30),
      key.replace('gh_', 'GH_'),
      key.replace('gh_', 'gx_'),
      ` ${key}`,
      `${key} `,
      `${key}\n`,
      key.replace(/_/g, '-'),
      key.slice(0, 10) + '!' + key.slice(11),
      `gh_${'a'.repeat(11)}_${'b'.repeat(43)}`,
      `gh_${'a'.repeat(12)}_${'b'.repeat(43)}_c`,
      `Bearer ${key}`,
      'gh_' + 'é'.repeat(12) + '_' + 'b'.repeat(43),
    ]) {
      expect(parseKey(bad), JSON.stringify(bad)).toBeNull();
    }
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (s) => {
        const parsed = parseKey(s);
        if (parsed !== null) expect(s).toMatch(/^gh_[0-9A-Za-z]{12}_[0-9A-Za-z]{32,64}$/);
      }),
    );
  });

  it('the hash is a keyed HMAC, compared in full', () => {
    const { key } = generateKey();
    const hash = hashKey(SECRET, key);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(hashKey(SECRET, key)).toBe(hash);
    expect(hashKey('another-secret-0123456789', key)).not.toBe(hash);
    expect(keyMatches(SECRET, key, hash)).toBe(true);
    expect(keyMatches('another-secret-0123456789', key, hash)).toBe(false);
    expect(keyMatches(SECRET, key.slice(0, -1) + (key.endsWith('a') ? 'b' : 'a'), hash)).toBe(false);
    expect(keyMatches(SECRET, key, hash.slice(0, 32))).toBe(false);
    expect(keyMatches(SECRET, key, '')).toBe(false);
    expect(keyMatches(SECRET, key, 'zz' + hash.slice(2))).toBe(false);
  });
});
