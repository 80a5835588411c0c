/**
 * The effective config as the admin API shows it: every field the config schema marks
 * `secret: true` (admin tokens, the API-key secret, credentials of sinks) replaced, and the
 * password of any URL (a store's, a sink's) replaced, wherever it is. The schema is the list:
 * a new secret field is marked where it is defined, not added here.
 */
import { createHash } from 'node:crypto';
import { ConfigSchema, type GatewayConfig } from '../config/schema.js';

export const REDACTED = '[redacted]';

type Node = Record<string, unknown>;

export function redactedConfig(config: GatewayConfig): Record<string, unknown> {
  return redact(ConfigSchema as unknown as Node, config) as Record<string, unknown>;
}

/** SHA-256 of the redacted config, keys sorted: equal on instances running the same config. */
export function configHash(config: GatewayConfig): string {
  return createHash('sha256')
    .update(canonical(redactedConfig(config)))
    .digest('hex');
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical((value as Node)[k])}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

function redact(schema: Node | undefined, value: unknown): unknown {
  if (schema?.secret === true && value !== undefined && value !== '') return REDACTED;
  if (typeof value === 'string') return withoutPassword(value);
  if (Array.isArray(value)) return value.map((v) => redact(branches(schema, 'items'), v));
  if (typeof value !== 'object' || value === null) return value;
  const out: Node = {};
  for (const [key, v] of Object.entries(value as Node)) out[key] = redact(propertySchema(schema, key), v);
  return out;
}

/** The schema of `key` in an object schema (properties, a record's pattern, any branch of a union). */
function propertySchema(schema: Node | undefined, key: string): Node | undefined {
  if (schema === undefined) return undefined;
  const found: Node[] = [];
  const props = schema.properties as Record<string, Node> | undefined;
  if (props?.[key]) found.push(props[key]);
  const patterns = schema.patternProperties as Record<string, Node> | undefined;
  if (patterns) for (const p of Object.values(patterns)) found.push(p);
  if (typeof schema.additionalProperties === 'object') found.push(schema.additionalProperties as Node);
  for (const branch of (schema.anyOf ?? schema.oneOf ?? []) as Node[]) {
    const s = propertySchema(branch, key);
    if (s) found.push(s);
  }
  return merge(found);
}

function branches(schema: Node | undefined, field: 'items'): Node | undefined {
  if (schema === undefined) return undefined;
  const found: Node[] = [];
  if (typeof schema[field] === 'object') found.push(schema[field] as Node);
  for (const branch of (schema.anyOf ?? schema.oneOf ?? []) as Node[]) {
    const s = branches(branch, field);
    if (s) found.push(s);
  }
  return merge(found);
}

/** Several candidate schemas as one: secret if any says so, their properties and branches joined. */
function merge(found: Node[]): Node | undefined {
  if (found.length <= 1) return found[0];
  return { secret: found.some((s) => s.secret === true), anyOf: found };
}

/** `scheme://user:password@host` → `scheme://user:redacted@host`; anything else as it is. */
function withoutPassword(s: string): string {
  if (!/^[a-z][a-z0-9+.-]*:\/\/[^/@]*:[^/@]*@/i.test(s)) return s;
  try {
    const url = new URL(s);
    if (url.password === '') return s;
    url.password = 'redacted';
    return url.toString();
  } catch {
    return s.replace(/(\/\/[^/:@]*:)[^/@]*@/, '$1redacted@');
  }
}
