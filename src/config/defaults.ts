import { type TSchema } from '@sinclair/typebox';

type Json = Record<string, unknown>;
const isPlainObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Returns a copy of `value` with the schema's defaults filled in, never touching the input.
 * (TypeBox's Value.Default mutates, and skips the values of records such as `services`.)
 *
 * A `null` where the schema has a default counts as absent: in YAML `routes:` with every entry
 * commented out is null, and means "no routes", not "routes must be a list".
 */
export function withDefaults(schema: TSchema, value: unknown): unknown {
  let v = value;
  if ((v === undefined || v === null) && 'default' in schema) v = structuredClone(schema.default as unknown);
  if (schema.type === 'object' && isPlainObject(v)) {
    const out: Json = { ...v };
    const props = (schema.properties ?? {}) as Record<string, TSchema>;
    for (const [key, propSchema] of Object.entries(props)) {
      const filled = withDefaults(propSchema, v[key]);
      if (filled !== undefined) out[key] = filled;
    }
    const pattern = schema.patternProperties as Record<string, TSchema> | undefined;
    const valueSchema = pattern ? Object.values(pattern)[0] : undefined;
    if (valueSchema) {
      for (const key of Object.keys(out)) {
        // hasOwn, not `in`: a service called "constructor" is a record entry like any other
        if (!Object.hasOwn(props, key)) out[key] = withDefaults(valueSchema, out[key]);
      }
    }
    return out;
  }
  if (schema.type === 'array' && Array.isArray(v) && schema.items) {
    return v.map((item: unknown) => withDefaults(schema.items as TSchema, item));
  }
  return v;
}

/** Freezes a whole tree, so nothing downstream can change the loaded config. */
export function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
