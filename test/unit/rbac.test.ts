import { describe, expect, it } from 'vitest';
import { compileRoles, covers, grantable, granted } from '../../src/auth/permissions.js';

const table = compileRoles({
  reader: ['orders:read', 'catalog:read'],
  writer: ['orders:read', 'orders:write'],
  ordersAdmin: ['orders:*'],
  auditor: ['*:read'],
  admin: ['*'],
  nobody: [],
});

describe('covers', () => {
  it('matches exact permissions and the wildcards', () => {
    expect(covers('orders:read', 'orders:read')).toBe(true);
    expect(covers('orders:read', 'orders:write')).toBe(false);
    expect(covers('orders:*', 'orders:delete')).toBe(true);
    expect(covers('orders:*', 'invoices:read')).toBe(false);
    expect(covers('*:read', 'invoices:read')).toBe(true);
    expect(covers('*:read', 'invoices:write')).toBe(false);
    expect(covers('*', 'anything:at-all')).toBe(true);
  });
  it('does not match by prefix or across the colon', () => {
    expect(covers('orders:read', 'orders:readall')).toBe(false);
    expect(covers('orders:read', 'orders:rea')).toBe(false);
    expect(covers('order:*', 'orders:read')).toBe(false);
    expect(covers('orders:*', 'ordersx:read')).toBe(false);
    expect(covers('orders', 'orders:read')).toBe(false);
    expect(covers('orders:read', 'orders')).toBe(false);
    expect(covers('orders:*', 'orders')).toBe(false);
  });
});

describe('granted', () => {
  it('grants through any of the roles', () => {
    expect(granted(table, ['reader'], 'orders:read')).toBe(true);
    expect(granted(table, ['reader'], 'orders:write')).toBe(false);
    expect(granted(table, ['reader', 'writer'], 'orders:write')).toBe(true);
    expect(granted(table, ['ordersAdmin'], 'orders:refund')).toBe(true);
    expect(granted(table, ['admin'], 'billing:delete')).toBe(true);
    expect(granted(table, ['auditor'], 'billing:read')).toBe(true);
  });
  it('unknown roles and empty roles grant nothing', () => {
    expect(granted(table, [], 'orders:read')).toBe(false);
    expect(granted(table, ['superuser', 'root', '*'], 'orders:read')).toBe(false);
    expect(granted(table, ['nobody'], 'orders:read')).toBe(false);
    expect(granted(table, ['__proto__', 'constructor', 'toString'], 'orders:read')).toBe(false);
  });
  it('role names are matched exactly (case-sensitive)', () => {
    expect(granted(table, ['Reader', 'ADMIN'], 'orders:read')).toBe(false);
  });
  it('every permission of a route is required', () => {
    const needed = ['orders:read', 'orders:write'];
    const all = (roles: string[]) => needed.every((p) => granted(table, roles, p));
    expect(all(['reader'])).toBe(false);
    expect(all(['writer'])).toBe(true);
    expect(all(['reader', 'ordersAdmin'])).toBe(true);
  });
});

describe('grantable (config check)', () => {
  it('says whether any role grants a permission', () => {
    expect(grantable(table, 'orders:refund')).toBe(true);
    expect(grantable(compileRoles({ reader: ['orders:read'] }), 'orders:write')).toBe(false);
  });
});
