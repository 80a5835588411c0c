/**
 * `/services`: each service's targets with their health, and the operator's controls: take a
 * target out of rotation (or back), close a circuit breaker. The controls act on this instance
 * (every worker process of it), not on other instances: call each instance to act on all.
 */
import { Type } from '@sinclair/typebox';
import { problem } from '../../problems/registry.js';
import type { AdminContext } from '../context.js';
import { AdminProblem, defineRoute, ok, type AdminRoute } from '../route-table.js';

const route = defineRoute<AdminContext>();

const ServiceParams = Type.Object(
  { name: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,100}$', description: 'the service name' }) },
  { additionalProperties: false },
);
const TargetParams = Type.Object(
  {
    name: ServiceParams.properties.name,
    target: Type.String({
      pattern: '^[A-Za-z0-9.:\\[\\]-]{1,300}$',
      description: 'the target as `host:port` (as GET /services shows it, without the scheme)',
    }),
  },
  { additionalProperties: false },
);
const TargetState = Type.Object(
  {
    service: Type.String(),
    target: Type.String(),
    disabled: Type.Boolean(),
    processes: Type.Integer({ minimum: 0, description: 'processes of this instance that applied it' }),
  },
  { additionalProperties: false },
);

function serviceOf(ctx: AdminContext, name: string) {
  const service = ctx.runtime().services.get(name);
  if (service === undefined) throw new AdminProblem(problem('not_found', `no service "${name}"`));
  return service;
}

const toggle = (enabled: boolean): AdminRoute<AdminContext> =>
  route({
    method: 'POST',
    path: `/services/{name}/targets/{target}/${enabled ? 'enable' : 'disable'}`,
    operationId: enabled ? 'enableTarget' : 'disableTarget',
    tag: 'services',
    summary: enabled
      ? 'Put a disabled target back into rotation (this instance)'
      : 'Take a target out of rotation (this instance): it gets no new request, even when no other target is available',
    description:
      'Per instance: every worker process of the instance that answers applies it; other instances are not told. A reload that rebuilds the service (its settings changed) forgets it.',
    mutating: true,
    params: TargetParams,
    responses: { 200: { description: 'applied', schema: TargetState } },
    target: ({ params }) => {
      const p = params as { name: string; target: string };
      return `${p.name}/${p.target}`;
    },
    handler: async ({ params }, ctx) => {
      const service = serviceOf(ctx, params.name);
      const target = service.targets.find((t) => t.address === params.target);
      if (target === undefined)
        throw new AdminProblem(
          problem('not_found', `service "${params.name}" has no target ${params.target}`),
        );
      const processes = await ctx.control({
        kind: 'target',
        service: params.name,
        target: params.target,
        enabled,
      });
      return ok({ service: params.name, target: params.target, disabled: !enabled, processes });
    },
  });

export const serviceRoutes = [
  route({
    method: 'GET',
    path: '/services',
    operationId: 'listServices',
    tag: 'services',
    summary: "Each service's targets (health, ejection, disabled), in-flight requests and circuit breaker",
    mutating: false,
    responses: {
      200: {
        description: 'services',
        schema: Type.Object(
          { services: Type.Array(Type.Record(Type.String(), Type.Unknown())) },
          { additionalProperties: false },
        ),
      },
    },
    handler: (_input, ctx) => ok({ services: ctx.state.services() }),
  }),
  toggle(false),
  toggle(true),
  route({
    method: 'POST',
    path: '/services/{name}/breaker/reset',
    operationId: 'resetBreaker',
    tag: 'services',
    summary: "Close the service's circuit breaker now, with an empty window (this instance)",
    description: 'Per instance, as the target controls.',
    mutating: true,
    params: ServiceParams,
    responses: {
      200: {
        description: 'closed',
        schema: Type.Object(
          {
            service: Type.String(),
            breaker: Type.Literal('closed'),
            processes: Type.Integer({ minimum: 0 }),
          },
          { additionalProperties: false },
        ),
      },
    },
    target: ({ params }) => (params as { name: string }).name,
    handler: async ({ params }, ctx) => {
      serviceOf(ctx, params.name);
      const processes = await ctx.control({ kind: 'breakerReset', service: params.name });
      return ok({ service: params.name, breaker: 'closed', processes });
    },
  }),
];
