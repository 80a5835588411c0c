/** The rules a new key is checked against, shared by `gatehouse keys` and the admin `/keys`. */
import { describe, expect, it } from 'vitest';
import {
  checkExpiresAt,
  checkLifetime,
  checkNewKey,
  KeyInputError,
  MAX_KEY_LIFETIME_MS,
} from '../../src/auth/api-keys/issue.js';

const names = { rateLimit: { tiers: { free: {}, pro: {} } }, rbac: { roles: { reader: [], writer: [] } } };
const open = { rateLimit: { tiers: {} }, rbac: { roles: {} } };

function refusal(fn: () => unknown): Pick<KeyInputError, 'field' | 'reason' | 'message' | 'configured'> {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof KeyInputError)) throw err;
    return { field: err.field, reason: err.reason, message: err.message, configured: err.configured };
  }
  throw new Error('not refused');
}

describe('checkNewKey', () => {
  it('accepts configured names and returns them', () => {
    expect(checkNewKey({ name: 'acme', tier: 'pro', roles: ['reader'] }, names)).toEqual({
      name: 'acme',
      tier: 'pro',
      roles: ['reader'],
    });
  });

  it('accepts any well-formed tier and role when none are configured', () => {
    expect(checkNewKey({ name: 'a', tier: 'gold', roles: ['boss'] }, open).tier).toBe('gold');
  });

  it('refuses the first bad field, in the order name, tier, roles', () => {
    expect(refusal(() => checkNewKey({ name: '', tier: '!', roles: 1 }, names))).toEqual({
      field: 'name',
      reason: 'malformed',
      message: '1 to 100 letters, digits, spaces or _.@:-',
      configured: [],
    });
    expect(refusal(() => checkNewKey({ name: 'a', tier: 'a b', roles: [] }, names))).toMatchObject({
      field: 'tier',
      reason: 'malformed',
      message: 'letters, digits or _.-',
    });
    expect(refusal(() => checkNewKey({ name: 'a', tier: 'gold', roles: 1 }, names))).toEqual({
      field: 'tier',
      reason: 'unknown',
      message: 'unknown tier "gold"',
      configured: ['free', 'pro'],
    });
  });

  it('refuses roles that are not an array of well-formed names, or not configured', () => {
    const roles = (r: unknown) => refusal(() => checkNewKey({ name: 'a', tier: 'free', roles: r }, names));
    expect(roles('reader')).toMatchObject({ reason: 'malformed', message: 'an array of role names' });
    expect(roles([1])).toMatchObject({ reason: 'malformed', message: 'an array of role names' });
    expect(roles(['a b'])).toMatchObject({ reason: 'malformed', message: 'invalid role name "a b"' });
    expect(roles(['reader', 'boss', 'root'])).toEqual({
      field: 'roles',
      reason: 'unknown',
      message: 'unknown role(s) boss, root',
      configured: ['reader', 'writer'],
    });
  });
});

describe('checkLifetime', () => {
  it('takes 0 alone, a duration with its unit, or milliseconds', () => {
    expect(checkLifetime('0')).toBe(0);
    expect(checkLifetime('90d')).toBe(90 * 86_400_000);
    expect(checkLifetime(1500)).toBe(1500);
  });

  it('refuses a bare number in a string, a non-duration, and more than 3650d', () => {
    expect(refusal(() => checkLifetime('24'))).toMatchObject({
      field: 'lifetime',
      reason: 'malformed',
      message: 'invalid duration "24" (use e.g. 0, 30m, 24h, 90d)',
    });
    expect(refusal(() => checkLifetime(true))).toMatchObject({ reason: 'malformed' });
    expect(refusal(() => checkLifetime('3651d'))).toMatchObject({
      reason: 'out_of_range',
      message: 'must be between 0 and 3650d',
    });
  });
});

describe('checkExpiresAt', () => {
  const now = Date.parse('2030-01-01T00:00:00Z');
  const dbNow = () => Promise.resolve(now);

  it('takes an instant after the database now, within 10 years', async () => {
    expect((await checkExpiresAt('2030-01-02T00:00:00Z', dbNow)).getTime()).toBe(now + 86_400_000);
    expect((await checkExpiresAt(new Date(now + MAX_KEY_LIFETIME_MS).toISOString(), dbNow)).getTime()).toBe(
      now + MAX_KEY_LIFETIME_MS,
    );
  });

  it('refuses a past instant, one too far ahead, and anything not an instant (without asking the time)', async () => {
    const expected = {
      field: 'expiresAt',
      message: 'an ISO 8601 instant in the future (within 10 years)',
    };
    await expect(checkExpiresAt('2029-12-31T23:59:59Z', dbNow)).rejects.toMatchObject(expected);
    await expect(checkExpiresAt('2041-01-01T00:00:00Z', dbNow)).rejects.toMatchObject(expected);
    const never = () => Promise.reject(new Error('asked the time'));
    await expect(checkExpiresAt('yesterday', never)).rejects.toMatchObject(expected);
    await expect(checkExpiresAt(1_900_000_000_000, never)).rejects.toMatchObject(expected);
  });
});
