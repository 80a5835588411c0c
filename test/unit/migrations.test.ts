import { describe, expect, it } from 'vitest';
import {
  API_KEY_COLUMNS,
  assertKeyTable,
  legacyVersions,
  pendingVersions,
  SchemaError,
} from '../../src/stores/migrations.js';

describe('adopting the versions of the old schema_migrations table', () => {
  const keys = [...API_KEY_COLUMNS];

  it('takes Gatehouse rows when api_keys has Gatehouse columns', () => {
    expect(legacyVersions(['1'], keys, 1)).toEqual([1]);
    expect(legacyVersions(['2'], keys, 3)).toEqual([1, 2]); // applied in order
  });

  it("ignores other tools' rows, and rows without the table they stand for", () => {
    expect(legacyVersions([], keys, 1)).toEqual([]);
    expect(legacyVersions(['20240105120000'], keys, 1)).toEqual([]);
    expect(legacyVersions(['1'], [], 1)).toEqual([]); // golang-migrate at version 1
    expect(legacyVersions(['1'], ['id', 'token'], 1)).toEqual([]); // another application's api_keys
    expect(legacyVersions(['1.5', '0', '-1'], keys, 2)).toEqual([]);
  });
});

describe('migrating', () => {
  it('runs what is not applied, in order', () => {
    expect(pendingVersions(new Set(), 3)).toEqual([1, 2, 3]);
    expect(pendingVersions(new Set([1, 3]), 3)).toEqual([2]);
    expect(pendingVersions(new Set([1, 2, 7]), 2)).toEqual([]);
  });

  it('ends with api_keys in place, or fails', () => {
    expect(() => assertKeyTable([...API_KEY_COLUMNS, 'extra'], 'schema "s"')).not.toThrow();
    expect(() => assertKeyTable([], 'schema "s"')).toThrow(SchemaError);
    expect(() => assertKeyTable(['id', 'token'], 'schema "s"')).toThrow(
      'table api_keys in schema "s" lacks the column(s) name, tier, roles, hash, created_at, expires_at, revoked_at, last_used_at',
    );
  });
});
