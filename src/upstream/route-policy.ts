/**
 * A route's own upstream limits resolved once, at load: the body limit, the response timeout and
 * a retry policy per service the route reaches. A route without any keeps the gateway's body
 * limit, 0 (each service's own timeout) and null (each service's own retry policy), which the
 * proxy reads without a lookup.
 */
import {
  routeServiceNames,
  type CanaryRuleConfig,
  type RouteServicesConfig,
} from '../router/split-config.js';
import type { RetryPolicy } from './retry-policy.js';
import type { RouteRetryConfig } from './config.js';
import type { Service } from './service.js';

export type RouteUpstreamPolicy = {
  readonly bodyLimit: number;
  readonly responseTimeout: number;
  readonly retryPolicies: ReadonlyMap<Service, RetryPolicy> | null;
};

export function routeUpstreamPolicy(
  route: {
    readonly limits?: { readonly bodySize?: number | undefined } | undefined;
    readonly timeouts?: { readonly response?: number | undefined } | undefined;
    readonly retry?: RouteRetryConfig | undefined;
    readonly service?: string | undefined;
    readonly services?: RouteServicesConfig | undefined;
    readonly canary?: readonly CanaryRuleConfig[] | undefined;
  },
  gatewayBodyLimit: number,
  services: ReadonlyMap<string, Service>,
): RouteUpstreamPolicy {
  let retryPolicies: Map<Service, RetryPolicy> | null = null;
  const retry = route.retry;
  if (retry !== undefined && Object.keys(retry).length > 0) {
    const overrides = Object.fromEntries(Object.entries(retry).filter(([, v]) => v !== undefined));
    retryPolicies = new Map();
    for (const name of routeServiceNames(route)) {
      const service = services.get(name);
      if (service !== undefined) retryPolicies.set(service, service.retry.withRules(overrides));
    }
  }
  return {
    bodyLimit: route.limits?.bodySize ?? gatewayBodyLimit,
    responseTimeout: route.timeouts?.response ?? 0,
    retryPolicies,
  };
}
