/**
 * What the two key stores share about their schema: where applied migrations are recorded, how
 * a database migrated under the old table name is recognised, and what must exist afterwards.
 *
 * Gatehouse records its migrations in `gatehouse_schema_migrations`. Before, it used the
 * unqualified `schema_migrations`, the table Rails, golang-migrate and others keep in the same
 * database: in such a database Gatehouse read their versions as its own, created nothing and
 * reported success. Now that table is only read, to adopt the versions a Gatehouse that used it
 * recorded (see legacyVersions), and never written.
 */
import { ErrorCodes } from '../problems/error-codes.js';

/** The table of applied versions (one row per migration, in the store's schema or file). */
export const MIGRATIONS_TABLE = 'gatehouse_schema_migrations';

/** The table name Gatehouse used before; shared with other tools, so only read. */
export const LEGACY_MIGRATIONS_TABLE = 'schema_migrations';

/** The columns the repositories read and write; a migration that adds one adds it here. */
export const API_KEY_COLUMNS: readonly string[] = [
  'id',
  'name',
  'tier',
  'roles',
  'hash',
  'created_at',
  'expires_at',
  'revoked_at',
  'last_used_at',
];

/** What `migrate` did, for `gatehouse migrate` to say. */
export type MigrationReport = {
  /** where the tables are: `schema "public"` or `file ./data/gatehouse.db` */
  readonly location: string;
  /** the schema version now (the highest applied migration) */
  readonly version: number;
  /** migrations run by this call */
  readonly applied: readonly number[];
  /** versions taken over from the old `schema_migrations` table by this call */
  readonly adopted: readonly number[];
};

/** The schema is not what Gatehouse needs and migrating cannot fix it without a person. */
export class SchemaError extends Error {
  readonly code = ErrorCodes.SCHEMA;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Migrations not yet applied, in order (versions are 1-based indexes into the list). */
export function pendingVersions(applied: ReadonlySet<number>, count: number): number[] {
  const pending: number[] = [];
  for (let v = 1; v <= count; v++) if (!applied.has(v)) pending.push(v);
  return pending;
}

/** The versions, as the text a `version` column of any type reads as, that Gatehouse may have recorded. */
export function knownVersionTexts(count: number): string[] {
  return Array.from({ length: count }, (_, i) => String(i + 1));
}

/**
 * The versions of the old `schema_migrations` table to adopt. `recorded` are its `version`
 * values (as text) that are Gatehouse versions; `keyColumns` the columns `api_keys` has (empty
 * when there is no such table). Adopted only with both pieces of evidence: the rows alone could
 * belong to another tool that numbers from 1, and the table alone could be another application's.
 * Every version up to the highest recorded one is adopted (Gatehouse applied them in order).
 */
export function legacyVersions(
  recorded: readonly string[],
  keyColumns: readonly string[],
  count: number,
): number[] {
  const versions = recorded.map(Number).filter((v) => Number.isInteger(v) && v >= 1 && v <= count);
  if (versions.length === 0 || missingColumns(keyColumns).length > 0) return [];
  return Array.from({ length: Math.max(...versions) }, (_, i) => i + 1);
}

export function missingColumns(actual: readonly string[]): string[] {
  const have = new Set(actual);
  return API_KEY_COLUMNS.filter((c) => !have.has(c));
}

/**
 * The check after migrating: `api_keys` has every column the repository uses. Throws when not,
 * so that `migrate` never reports success without the tables in place.
 */
export function assertKeyTable(keyColumns: readonly string[], location: string): void {
  if (keyColumns.length === 0) {
    throw new SchemaError(
      `table api_keys is missing in ${location} although ${MIGRATIONS_TABLE} records its migration ` +
        `(dropped by hand?): delete the rows of ${MIGRATIONS_TABLE} to create it again`,
    );
  }
  const missing = missingColumns(keyColumns);
  if (missing.length > 0) {
    throw new SchemaError(
      `table api_keys in ${location} lacks the column(s) ${missing.join(', ')}: it is not Gatehouse's, ` +
        'or was changed by hand',
    );
  }
}

/** The error for a migration whose table already exists but was not created by Gatehouse. */
export function foreignTableError(location: string, cause: unknown, postgres: boolean): SchemaError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  const hint = postgres
    ? 'give Gatehouse a schema of its own (add ?options=-c%20search_path%3Dgatehouse to database.url, after CREATE SCHEMA gatehouse)'
    : 'give Gatehouse a file of its own (database.file)';
  return new SchemaError(
    `cannot create Gatehouse's tables in ${location}: ${reason}; a table of that name belongs to something else: ${hint}`,
    { cause },
  );
}
