import { describe, expect, it } from 'vitest';
import { driverError } from '../../src/stores/database.js';

describe('a key-store driver that cannot be loaded', () => {
  it('is named with the setting that needs it: a native module built for another Node.js', () => {
    const err = Object.assign(
      new Error('The module was compiled against NODE_MODULE_VERSION 115. This version requires 137.'),
      { code: 'ERR_DLOPEN_FAILED' },
    );
    const named = driverError(err, 'database.file', 'better-sqlite3') as Error;
    expect(named.message).toMatch(
      /^database\.file: the better-sqlite3 package could not be loaded \(The module was compiled .*\); rebuild it for this Node\.js \(npm rebuild better-sqlite3\), or use PostgreSQL \(database\.url\)$/,
    );
    expect(named.cause).toBe(err);
  });

  it('is named with the setting that needs it: a package that is not installed', () => {
    const err = Object.assign(new Error("Cannot find package 'pg'"), { code: 'ERR_MODULE_NOT_FOUND' });
    expect((driverError(err, 'database.url', 'pg') as Error).message).toBe(
      "database.url: the pg package could not be loaded (Cannot find package 'pg'); reinstall the dependencies",
    );
  });

  it('passes any other error through unchanged (a file that cannot be opened, a hostile path)', () => {
    const err = Object.assign(new Error('unable to open database file'), { code: 'SQLITE_CANTOPEN' });
    expect(driverError(err, 'database.file', 'better-sqlite3')).toBe(err);
    expect(driverError('not an error', 'database.file', 'better-sqlite3')).toBe('not an error');
  });
});
