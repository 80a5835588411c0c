/**
 * RBAC: roles grant permissions `resource:action`, with wildcards `orders:*` (every action on
 * orders) and `*` (everything). Compiled once per config into a lookup per role.
 */

export type RoleTable = ReadonlyMap<string, readonly string[]>;

export function compileRoles(roles: Readonly<Record<string, readonly string[]>>): RoleTable {
  return new Map(Object.entries(roles));
}

/** Does the permission `granted` cover the permission `needed`? */
export function covers(granted: string, needed: string): boolean {
  if (granted === '*' || granted === needed) return true;
  const colon = granted.indexOf(':');
  if (colon === -1) return false;
  const action = granted.slice(colon + 1);
  const resource = granted.slice(0, colon);
  const neededColon = needed.indexOf(':');
  if (neededColon === -1) return false;
  const nResource = needed.slice(0, neededColon);
  const nAction = needed.slice(neededColon + 1);
  return (resource === '*' || resource === nResource) && (action === '*' || action === nAction);
}

/** Is `needed` granted to a consumer with `roles`? Unknown roles grant nothing. */
export function granted(table: RoleTable, roles: readonly string[], needed: string): boolean {
  for (const role of roles) {
    const perms = table.get(role);
    if (perms === undefined) continue;
    for (const p of perms) if (covers(p, needed)) return true;
  }
  return false;
}

/** Is `needed` granted by any role at all (a config check)? */
export function grantable(table: RoleTable, needed: string): boolean {
  return granted(table, [...table.keys()], needed);
}
