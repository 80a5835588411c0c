/**
 * Human wording for schema errors. TypeBox's defaults say "Expected union value"; ours read as the
 * end of a sentence that starts with the field's path: `listen.port: must be a port number ...`.
 *
 * A leaf schema's `errorMessage` keyword, when present, is used as is (the sections set it where
 * the generic wording would not say what is expected). Otherwise the wording comes from the kind
 * of error: a type ("must be a list"), a bound ("must be at least 1"), the allowed literals
 * ("must be one of: "GET", "HEAD""), an unknown key (with the keys that are allowed there).
 */
import { type TSchema } from '@sinclair/typebox';
import { DefaultErrorFunction, SetErrorFunction, ValueErrorType } from '@sinclair/typebox/errors';
import { isDuration, parseDuration } from './units.js';

const literals = (schema: TSchema): unknown[] | null => {
  const options = schema.anyOf as TSchema[] | undefined;
  if (!options?.every((o) => 'const' in o)) return null;
  return options.map((o) => o.const as unknown);
};

const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

const TYPE_NAMES: Partial<Record<ValueErrorType, string>> = {
  [ValueErrorType.Object]: 'a mapping (key: value)',
  [ValueErrorType.Array]: 'a list',
  [ValueErrorType.String]: 'a string',
  [ValueErrorType.Integer]: 'a whole number',
  [ValueErrorType.Number]: 'a number',
  [ValueErrorType.Boolean]: 'true or false',
};

/**
 * A duration that is well-formed but shorter than its field allows (fields.ts `Duration` with a
 * `min`): `must be at least 100ms, not "0s": <why>`. Null for anything else.
 */
function belowMinimum(schema: TSchema, value: unknown): string | null {
  const minimumMs: unknown = schema.minimumMs;
  if (typeof minimumMs !== 'number') return null;
  let ms: number;
  if (typeof value === 'number' && Number.isInteger(value) && value >= 0) ms = value;
  else if (typeof value === 'string' && isDuration(value)) ms = parseDuration(value);
  else return null;
  if (ms >= minimumMs) return null;
  const why = str(schema.minimumWhy);
  return `${str(schema.minimumMessage) ?? `must be at least ${minimumMs} ms`}, not ${JSON.stringify(value)}${why ? `: ${why}` : ''}`;
}

/** The message for one schema error (exported for tests; the loader goes through TypeBox). */
export function schemaErrorMessage(error: Parameters<Parameters<typeof SetErrorFunction>[0]>[0]): string {
  const schema = error.schema;
  const custom = str(schema.errorMessage);
  switch (error.errorType) {
    case ValueErrorType.ObjectAdditionalProperties: {
      const names = schema.propertyNames as { errorMessage?: unknown } | undefined;
      const nameMessage = str(names?.errorMessage);
      if (nameMessage) return nameMessage;
      const keys = Object.keys((schema.properties ?? {}) as object);
      return keys.length > 0 ? `unknown key (expected one of: ${keys.join(', ')})` : 'unknown key';
    }
    case ValueErrorType.ObjectRequiredProperty:
      return 'is required';
    default:
      break;
  }
  const tooShort = belowMinimum(schema, error.value);
  if (tooShort) return tooShort;
  if (custom) return custom;
  const typeName = TYPE_NAMES[error.errorType];
  if (typeName) return `must be ${typeName}`;
  switch (error.errorType) {
    case ValueErrorType.Union: {
      const allowed = literals(schema);
      if (allowed) return `must be one of: ${allowed.map((a) => JSON.stringify(a)).join(', ')}`;
      if (typeof schema.description === 'string') return `must be ${schema.description}`;
      return 'has an invalid value';
    }
    case ValueErrorType.Literal:
      return `must be ${JSON.stringify(schema.const)}`;
    case ValueErrorType.IntegerMinimum:
    case ValueErrorType.NumberMinimum:
      return `must be at least ${String(schema.minimum)}`;
    case ValueErrorType.IntegerMaximum:
    case ValueErrorType.NumberMaximum:
      return `must be at most ${String(schema.maximum)}`;
    case ValueErrorType.ArrayMinItems:
      return schema.minItems === 1
        ? 'must list at least one item'
        : `must list at least ${String(schema.minItems)} items`;
    case ValueErrorType.ArrayUniqueItems:
      return 'must not list the same item twice';
    case ValueErrorType.StringPattern:
      return `must match ${String(schema.pattern)}`;
    default:
      return DefaultErrorFunction(error)
        .replace(/^Expected/, 'must be')
        .replace(/^Unexpected/, 'unexpected');
  }
}

let installed = false;

export function installErrorMessages(): void {
  if (installed) return;
  installed = true;
  SetErrorFunction(schemaErrorMessage);
}
