/**
 * The admin API's OpenAPI 3.1 document (`GET /openapi.json`), generated from the route table:
 * the same TypeBox schemas that validate requests describe them here, with each endpoint's
 * success responses and the problems it may answer with. Nothing in it is written by hand but
 * the descriptions beside each declaration.
 */
import type { TSchema } from '@sinclair/typebox';
import {
  PROBLEM_CODES,
  PROBLEM_REGISTRY,
  PROBLEM_TYPE_BASE,
  type ProblemCode,
} from '../problems/registry.js';
import type { AdminRoute } from './route-table.js';

/** the codes the admin port answers with */
const ADMIN_CODES = PROBLEM_CODES.filter((c) => PROBLEM_REGISTRY[c].port !== 'proxy');

export const TAGS: ReadonlyArray<{ name: string; description: string }> = [
  { name: 'probes', description: 'Liveness, readiness and metrics: no token needed' },
  {
    name: 'gateway',
    description: 'This instance: status, effective config, reload, log level, drain, audit log',
  },
  { name: 'routes', description: 'The compiled route table, and which route a request would hit' },
  {
    name: 'services',
    description: 'Upstream services: health, targets in and out of rotation, circuit breakers',
  },
  { name: 'keys', description: 'API keys: issue, list, edit, revoke, rotate' },
  { name: 'usage', description: 'Usage against the rate limits, read from the rate-limit store' },
];

const problemSchema = {
  type: 'object',
  required: ['type', 'title', 'status', 'code'],
  properties: {
    type: {
      type: 'string',
      format: 'uri',
      description: `${PROBLEM_TYPE_BASE}<code>, documented in docs/errors.md#<code>`,
    },
    title: { type: 'string' },
    status: { type: 'integer' },
    detail: { type: 'string' },
    instance: {
      type: 'string',
      format: 'uri',
      description: 'the request id (X-Request-Id) as a URI: urn:uuid:<id>',
    },
    code: { type: 'string', enum: ADMIN_CODES },
    errors: { type: 'array', items: { type: 'string' } },
  },
};

/** A TypeBox schema as plain JSON Schema (its symbols and transforms' functions dropped). */
export function jsonOf(schema: TSchema): Record<string, unknown> {
  return JSON.parse(
    JSON.stringify(schema, (key, value: unknown) => (key === 'errorMessage' ? undefined : value)),
  ) as Record<string, unknown>;
}

/** The problem codes an endpoint may answer with, by status. */
export function problemsOf(r: AdminRoute<never> | AdminRoute<unknown>): Map<number, ProblemCode[]> {
  const codes: ProblemCode[] = [...(r.problems ?? [])];
  if (!r.open) codes.push('unauthorized_admin');
  if (r.mutating) codes.push('read_only_token');
  if (r.params || r.query || r.body) codes.push('bad_request');
  if (r.params) codes.push('not_found');
  codes.push('internal_error');
  const byStatus = new Map<number, ProblemCode[]>();
  for (const c of new Set(codes)) {
    const status = PROBLEM_REGISTRY[c].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), c]);
  }
  return byStatus;
}

function parameters(r: AdminRoute<unknown>): unknown[] {
  const out: unknown[] = [];
  for (const [where, schema] of [
    ['path', r.params],
    ['query', r.query],
  ] as const) {
    if (schema === undefined) continue;
    const json = jsonOf(schema);
    const props = (json.properties ?? {}) as Record<string, Record<string, unknown>>;
    const required = new Set((json.required ?? []) as string[]);
    for (const [name, s] of Object.entries(props)) {
      const { description, ...rest } = s;
      out.push({
        name,
        in: where,
        required: where === 'path' || required.has(name),
        schema: rest,
        ...(description === undefined ? {} : { description }),
      });
    }
  }
  return out;
}

export function openApiDocument(
  routes: readonly AdminRoute<never>[] | readonly AdminRoute<unknown>[],
  serverUrl?: string,
): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes as readonly AdminRoute<unknown>[]) {
    const responses: Record<string, unknown> = {};
    for (const [status, spec] of Object.entries(r.responses)) {
      responses[status] = {
        description: spec.description,
        ...(spec.schema !== undefined
          ? { content: { 'application/json': { schema: jsonOf(spec.schema) } } }
          : spec.contentType !== undefined
            ? { content: { [spec.contentType]: { schema: { type: 'string' } } } }
            : {}),
      };
    }
    for (const [status, codes] of problemsOf(r)) {
      responses[String(status)] ??= {
        description: codes.map((c) => `\`${c}\`: ${PROBLEM_REGISTRY[c].when}`).join('; '),
        content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
      };
    }
    const params = parameters(r);
    const operation: Record<string, unknown> = {
      operationId: r.operationId,
      tags: [r.tag],
      summary: r.summary,
      ...(r.description === undefined ? {} : { description: r.description }),
      ...(r.open ? { security: [] } : {}),
      ...(params.length > 0 ? { parameters: params } : {}),
      ...(r.body !== undefined
        ? {
            requestBody: {
              required: r.bodyOptional !== true,
              content: { 'application/json': { schema: jsonOf(r.body) } },
            },
          }
        : {}),
      responses,
      'x-mutating': r.mutating,
      'x-required-role': r.open ? 'none' : r.mutating ? 'admin' : 'read',
    };
    (paths[r.path] ??= {})[r.method.toLowerCase()] = operation;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Gatehouse admin API',
      version: '1',
      description:
        'The admin port of a Gatehouse instance. Every endpoint but the probes and /metrics needs `Authorization: Bearer <token>`; read-only tokens may call the endpoints that change nothing (`x-mutating: false`).',
    },
    servers: [
      { url: serverUrl ?? 'http://127.0.0.1:9080', description: 'the admin port (admin.host, admin.port)' },
    ],
    tags: TAGS,
    components: {
      securitySchemes: {
        adminToken: {
          type: 'http',
          scheme: 'bearer',
          description: 'admin.token, admin.readToken or a token of admin.tokens',
        },
      },
      schemas: { Problem: problemSchema },
    },
    security: [{ adminToken: [] }],
    paths,
  };
}
