/** Human wording for schema errors (TypeBox's defaults say "Expected union value"). */
import { type TSchema } from '@sinclair/typebox';
import { DefaultErrorFunction, SetErrorFunction, ValueErrorType } from '@sinclair/typebox/errors';

const literals = (schema: TSchema): unknown[] | null => {
  const options = schema.anyOf as TSchema[] | undefined;
  if (!options?.every((o) => 'const' in o)) return null;
  return options.map((o) => o.const as unknown);
};

let installed = false;

export function installErrorMessages(): void {
  if (installed) return;
  installed = true;
  SetErrorFunction((error) => {
    const schema = error.schema;
    switch (error.errorType) {
      case ValueErrorType.Union: {
        const allowed = literals(schema);
        if (allowed) return `must be one of: ${allowed.map((a) => JSON.stringify(a)).join(', ')}`;
        if (typeof schema.description === 'string') return `must be ${schema.description}`;
        return 'has an invalid value';
      }
      case ValueErrorType.ObjectAdditionalProperties:
        return 'unknown key';
      case ValueErrorType.ObjectRequiredProperty:
        return 'is required';
      case ValueErrorType.StringPattern:
        return typeof schema.description === 'string'
          ? `must be ${schema.description}`
          : `must match ${String(schema.pattern)}`;
      default:
        return DefaultErrorFunction(error)
          .replace(/^Expected/, 'must be')
          .replace(/^Unexpected/, 'unexpected');
    }
  });
}
