import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { makeDirectories } from '../../src/stores/sqlite-keys.js';

describe("the SQLite key store's directories", () => {
  const root = mkdtempSync(join(tmpdir(), 'gatehouse-sqlite-dirs-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it('creates the missing levels, and accepts one that exists', () => {
    const dir = join(root, 'a', 'b', 'c');
    makeDirectories(dir);
    expect(existsSync(dir)).toBe(true);
    makeDirectories(dir);
    makeDirectories(root);
  });

  // node's mkdirSync(..., { recursive: true }) never returns here (it loops on /proc's ENOENT)
  it.skipIf(!existsSync('/proc/self'))(
    'fails at once, naming the directory, where none can be made (/proc)',
    () => {
      expect(() => makeDirectories('/proc/gatehouse-nope/keys')).toThrow(
        /cannot create the directory \/proc\/gatehouse-nope for the key store/,
      );
    },
  );
});
