/**
 * Authorization: the route's `permissions` must all be granted by the consumer's roles.
 * 403 `forbidden` when one is missing (the credentials were fine; 401 is authentication's).
 */
import { compileRoles, granted } from '../../auth/permissions.js';
import type { GatewayConfig } from '../../config/schema.js';
import { problem } from '../../problems/registry.js';
import { defineStage } from '../stage.js';

type Section = { readonly needed: readonly string[]; readonly roles: GatewayConfig['rbac']['roles'] };

export const authorize = defineStage<Section>({
  name: 'authorize',
  order: 300,
  section: (route, config) =>
    (route.permissions ?? []).length === 0
      ? null
      : { needed: route.permissions ?? [], roles: config.rbac.roles },
  create({ needed, roles }) {
    const table = compileRoles(roles);
    return {
      onRequest(ctx) {
        const consumer = ctx.consumer;
        if (consumer === null) {
          // only reachable through a config the checks refuse (permissions without auth)
          return problem('forbidden', 'this route requires permissions, and the caller has no identity');
        }
        for (const p of needed) {
          if (!granted(table, consumer.roles, p))
            return problem('forbidden', `permission "${p}" is required`);
        }
        return undefined;
      },
    };
  },
});
