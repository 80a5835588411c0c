/**
 * IP allow and deny lists: the top-level `ip` lists, then the route's own, on the client
 * address (`ctx.clientIp`, after `trustedProxies`: a forged X-Forwarded-For from an untrusted
 * peer never reaches it). In each, a denied address is refused even when it is also allowed,
 * and a non-empty allow list refuses what it does not hold: 403 `ip_denied`. The first stage, so
 * a refused address costs nothing else.
 */
import type { IpFilterConfig } from '../../router/policy-config.js';
import { problem } from '../../problems/registry.js';
import { defineStage } from '../stage.js';
import { CidrSet } from './cidr.js';

type Section = readonly IpFilterConfig[];

/** One list pair compiled: null when it holds nothing. */
export type IpFilter = { readonly allow: CidrSet | null; readonly deny: CidrSet | null };

export function compileIpFilter(config: IpFilterConfig): IpFilter | null {
  if (config.allow.length === 0 && config.deny.length === 0) return null;
  return {
    allow: config.allow.length === 0 ? null : new CidrSet(config.allow),
    deny: config.deny.length === 0 ? null : new CidrSet(config.deny),
  };
}

/** Whether `address` passes the filter (the pure decision). */
export function passes(filter: IpFilter, address: string): boolean {
  if (filter.deny !== null && filter.deny.has(address)) return false;
  return filter.allow === null || filter.allow.has(address);
}

export const ipFilter = defineStage<Section>({
  name: 'ip-filter',
  order: 20,
  section(route, config) {
    const lists = [config.ip, route.ip].filter((l): l is IpFilterConfig => l !== undefined);
    return lists.some((l) => l.allow.length > 0 || l.deny.length > 0) ? lists : null;
  },
  create(lists) {
    const filters = lists.map(compileIpFilter).filter((f): f is IpFilter => f !== null);
    const denied = problem('ip_denied', 'requests from this address are not allowed on this route');
    return {
      onRequest(ctx) {
        const ip = ctx.clientIp;
        for (let i = 0; i < filters.length; i++) if (!passes(filters[i] as IpFilter, ip)) return denied;
        return undefined;
      },
    };
  },
});
