/**
 * Authorization: the route's `permissions` must all be granted by the consumer's roles.
 * 403 `forbidden` when one is missing (the credentials were fine; 401 is authentication's).
 */
import { compileRoles, granted } from '../../auth/permissions.js';
import { problem } from '../../pipeline/problems.js';
import type { Stage, StageFactory } from '../stage.js';

export const authorize: StageFactory = {
  name: 'authorize',
  compile(route, config): Stage | null {
    const needed = route.permissions ?? [];
    if (needed.length === 0) return null;
    const table = compileRoles(config.rbac.roles);
    return {
      name: 'authorize',
      run(ctx) {
        const consumer = ctx.consumer;
        if (consumer === null) {
          // only reachable through a config the checks refuse (permissions without auth)
          return problem(403, 'forbidden', 'this route requires permissions, and the caller has no identity');
        }
        for (const p of needed) {
          if (!granted(table, consumer.roles, p))
            return problem(403, 'forbidden', `permission "${p}" is required`);
        }
        return undefined;
      },
    };
  },
};
