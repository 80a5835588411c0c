/**
 * The config as the checks across fields see it (ConfigParts, fields.ts): the parts of a file's
 * values that satisfy the whole config's schema where they stand.
 */
import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import type { ConfigParts, PathSegment } from './fields.js';

type Json = Record<string, unknown>;
const isPlainObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** `root` (defaults applied, not yet validated) seen through `schema`, the config's schema. */
export function configParts(schema: TSchema, root: unknown): ConfigParts {
  const valueAt = (path: readonly PathSegment[]): unknown => {
    let node = root;
    for (const seg of path) {
      if (Array.isArray(node) && typeof seg === 'number') node = node[seg] as unknown;
      else if (isPlainObject(node) && Object.hasOwn(node, seg)) node = node[seg];
      else return undefined;
    }
    return node;
  };
  return {
    valid(partSchema, ...path) {
      const value = valueAt(path);
      const own = schemaAt(schema, path);
      if (value === undefined || own === undefined || !Value.Check(own, value)) return undefined;
      if (partSchema !== own && !Value.Check(partSchema, value)) return undefined;
      return Value.Decode(partSchema, value);
    },
    has: (...path) => valueAt(path) !== undefined,
    keys(...path) {
      const value = valueAt(path);
      return isPlainObject(value) ? Object.keys(value) : undefined;
    },
    length(...path) {
      const value = valueAt(path);
      return Array.isArray(value) ? value.length : 0;
    },
  };
}

/** The schema a value at `path` must satisfy: a property's, a record entry's, a list item's. */
function schemaAt(root: TSchema, path: readonly PathSegment[]): TSchema | undefined {
  let schema: TSchema | undefined = root;
  for (const seg of path) {
    if (schema === undefined) return undefined;
    if (schema.type === 'object') {
      const props = schema.properties as Record<string, TSchema> | undefined;
      const patterns = schema.patternProperties as Record<string, TSchema> | undefined;
      schema =
        props && Object.hasOwn(props, seg) ? props[seg] : patterns ? Object.values(patterns)[0] : undefined;
    } else if (schema.type === 'array' && typeof seg === 'number') {
      schema = schema.items as TSchema | undefined;
    } else return undefined;
  }
  return schema;
}
