/**
 * `GET /whoami`: which token the caller presented (its id and role, never the secret). The web
 * console asks it once at sign-in, to hide the buttons a read-only token may not press (the
 * server refuses them anyway).
 */
import { Type } from '@sinclair/typebox';
import type { AdminContext } from '../context.js';
import { defineRoute, ok } from '../route-table.js';

const route = defineRoute<AdminContext>();

export const sessionRoutes = [
  route({
    method: 'GET',
    path: '/whoami',
    operationId: 'whoAmI',
    tag: 'gateway',
    summary: "The caller's token id and role",
    description: 'With no token configured (loopback only) every caller is `anonymous`, an admin.',
    mutating: false,
    responses: {
      200: {
        description: 'the caller',
        schema: Type.Object(
          {
            id: Type.String({ description: 'the token id the audit log records' }),
            role: Type.Union([Type.Literal('admin'), Type.Literal('read')]),
          },
          { additionalProperties: false },
        ),
      },
    },
    handler: ({ caller }) => ok({ id: caller.id, role: caller.role }),
  }),
];
