/**
 * The admin API as data: each endpoint is one declaration (method, path, operationId, tag, the
 * TypeBox schemas of what it takes and answers, whether it changes anything, and its handler).
 * The admin server routes and validates from these declarations, and the OpenAPI document
 * (openapi.ts) and the reference in docs/admin-api.md are generated from the same ones, so the
 * three cannot drift apart. Adding an endpoint is adding one `defineRoute` to a table.
 */
import type { IncomingMessage } from 'node:http';
import type { Static, TSchema } from '@sinclair/typebox';
import type { Problem, ProblemCode } from '../problems/registry.js';
import type { AdminCaller } from './tokens.js';

export type AdminMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** A success answer; `target` names what a mutating call acted on, for the audit log. */
export type AdminAnswer = {
  readonly status: number;
  readonly body: unknown;
  /** a body that is not JSON (the Prometheus exposition) */
  readonly contentType?: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** what the audit log names as the target when only the answer knows it (a new key's id) */
  readonly auditTarget?: string;
};

export type AdminInput<P, Q, B> = {
  readonly params: P;
  readonly query: Q;
  readonly body: B;
  readonly caller: AdminCaller;
  readonly requestId: string;
  readonly req: IncomingMessage;
};

/** What a handler may end with instead of an answer (thrown or returned). */
export class AdminProblem extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail);
  }
}

export type ResponseSpec = {
  readonly description: string;
  /** absent: no body is described (a text body gives `contentType`) */
  readonly schema?: TSchema;
  readonly contentType?: string;
};

type Def<P extends TSchema, Q extends TSchema, B extends TSchema, C> = {
  readonly method: AdminMethod;
  /** OpenAPI-style: `/keys/{id}`; a `{name}` matches one non-empty segment */
  readonly path: string;
  readonly operationId: string;
  readonly tag: string;
  readonly summary: string;
  readonly description?: string;
  /** changes state: refused to read-only tokens, written to the audit log */
  readonly mutating: boolean;
  /** no token needed (probes, metrics) */
  readonly open?: boolean;
  readonly params?: P;
  readonly query?: Q;
  readonly body?: B;
  /** an empty body is taken as `{}` (the body's schema must allow it) */
  readonly bodyOptional?: boolean;
  /** success answers by status */
  readonly responses: Readonly<Record<number, ResponseSpec>>;
  /** the problem codes this endpoint itself answers with (besides the common ones) */
  readonly problems?: readonly ProblemCode[];
  /** what the audit log names as the call's target (a key id, a service) */
  readonly target?: (input: AdminInput<Static<P>, Static<Q>, Static<B>>) => string;
  readonly handler: (
    input: AdminInput<Static<P>, Static<Q>, Static<B>>,
    context: C,
  ) => AdminAnswer | Promise<AdminAnswer>;
};

/** One endpoint, its schemas' types erased (what the server and the generators walk). */
export type AdminRoute<C = unknown> = Omit<Def<TSchema, TSchema, TSchema, C>, 'handler' | 'target'> & {
  readonly handler: (
    input: AdminInput<unknown, unknown, unknown>,
    context: C,
  ) => AdminAnswer | Promise<AdminAnswer>;
  readonly target?: (input: AdminInput<unknown, unknown, unknown>) => string;
};

/** Declares one endpoint; the handler's input is typed from the schemas. */
export function defineRoute<C>() {
  return <P extends TSchema, Q extends TSchema, B extends TSchema>(def: Def<P, Q, B, C>): AdminRoute<C> =>
    def as unknown as AdminRoute<C>;
}

export const ok = (body: unknown, status = 200): AdminAnswer => ({ status, body });
