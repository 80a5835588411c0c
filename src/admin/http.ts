/**
 * Reading and checking what an admin request carries: its JSON body (bounded, an object, of
 * content type application/json), its path parameters and query, each against the endpoint's
 * TypeBox schema. Every refusal is a 400 `bad_request` naming the field; unknown fields are
 * refused, not ignored (the schemas are closed).
 */
import type { IncomingMessage } from 'node:http';
import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { problem } from '../problems/registry.js';
import { AdminProblem } from './route-table.js';

export const MAX_BODY = 16 * 1024;

const bad = (detail: string, errors?: string[]): AdminProblem =>
  new AdminProblem(errors ? { ...problem('bad_request', detail), errors } : problem('bad_request', detail));

/** The body as JSON; `undefined` when empty and `emptyOk`. */
export async function readJsonBody(req: IncomingMessage, emptyOk: boolean): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw bad(`the body exceeds ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  if (text.trim() === '') {
    if (emptyOk) return undefined;
    throw bad('a JSON body is required');
  }
  if (!/^application\/json\b/i.test(req.headers['content-type'] ?? ''))
    throw bad('the body must be application/json');
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw bad('the body is not valid JSON');
  }
}

/**
 * `value` checked against `schema` (after converting query strings to the numbers and booleans
 * the schema asks for, when `convert`); the checked value, or a 400 listing what is wrong.
 */
export function checked(schema: TSchema, value: unknown, where: string, convert = false): unknown {
  if (convert) strictNumbers(schema, value, where);
  const input = convert ? Value.Convert(schema, value) : value;
  if (Value.Check(schema, input)) return input;
  const errors: string[] = [];
  for (const e of Value.Errors(schema, input)) {
    const at = e.path === '' ? where : `${where}${e.path.replace(/\//g, '.')}`;
    const message = e.schema.errorMessage !== undefined ? String(e.schema.errorMessage) : e.message;
    errors.push(`${at}: ${message}`);
    if (errors.length >= 10) break;
  }
  throw bad(errors[0] ?? `${where}: invalid`, errors);
}

/**
 * Query strings are converted to the numbers their schema asks for, and TypeBox's conversion
 * would read `1.5` or `1e3` as an integer: such a value is refused before it gets there.
 */
function strictNumbers(schema: TSchema, value: unknown, where: string): void {
  const props = (schema as { properties?: Record<string, { type?: string }> }).properties;
  if (props === undefined || typeof value !== 'object' || value === null) return;
  for (const [key, s] of Object.entries(props)) {
    const v = (value as Record<string, unknown>)[key];
    if (s.type === 'integer' && typeof v === 'string' && !/^-?\d{1,15}$/.test(v))
      throw bad(`${where}.${key}: must be an integer`);
  }
}
