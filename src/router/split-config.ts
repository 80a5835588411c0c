/**
 * Weighted and canary routing, as a route configures it: `services` (several services with
 * weights, instead of `service`), `canary` (rules that send a request to a named service by a
 * header or cookie, before the weights) and `sticky` (a consumer keeps its share). The stage that
 * applies them is stages/service-split/; the checks here name the field at fault.
 */
import { Type, type StaticDecode } from '@sinclair/typebox';
import { strict, type ConfigCheck, type PathSegment } from '../config/fields.js';

/** an HTTP field name (RFC 9110 token) */
const HEADER_NAME = "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";

export const RouteServices = Type.Array(
  Type.Object(
    {
      name: Type.String({ description: 'name of a service in `services`' }),
      weight: Type.Integer({
        minimum: 0,
        maximum: 1_000_000,
        description:
          "this service's share: weight / the sum of the weights (0 = none, e.g. a canary switched off)",
      }),
    },
    strict,
  ),
  {
    minItems: 1,
    description:
      "several services, each taking a share of the requests by weight (instead of `service`); the heaviest is the route's primary service",
  },
);

export const CanaryRule = Type.Object(
  {
    header: Type.Optional(
      Type.String({
        pattern: HEADER_NAME,
        description: 'a request header whose value selects `service` (one of header or cookie)',
        errorMessage: 'must be a header name such as "x-canary"',
      }),
    ),
    cookie: Type.Optional(
      Type.String({
        pattern: HEADER_NAME,
        description: 'a cookie whose value selects `service` (one of header or cookie)',
        errorMessage: 'must be a cookie name such as "canary"',
      }),
    ),
    value: Type.String({ minLength: 1, description: 'the exact value that selects `service`' }),
    service: Type.String({ description: 'name of a service in `services`' }),
  },
  { ...strict, description: 'a request whose header or cookie has `value` goes to `service`' },
);

export const RouteCanary = Type.Array(CanaryRule, {
  minItems: 1,
  description: 'rules checked in order before the weights; the first that matches picks the service',
});

export const RouteSticky = Type.Literal('consumer', {
  description:
    'consumer: a consumer (an anonymous caller: its client address) always gets the same service of `services`, on every instance, by a hash of its id; absent: a smooth weighted round robin per instance',
});

export type RouteServicesConfig = StaticDecode<typeof RouteServices>;
export type CanaryRuleConfig = StaticDecode<typeof CanaryRule>;

/**
 * The service a route's requests go to unless a split picks another: `service`, else the first
 * of the heaviest of `services`.
 */
export function primaryService(route: {
  readonly service?: string | undefined;
  readonly services?: RouteServicesConfig | undefined;
}): string {
  if (route.service !== undefined) return route.service;
  let best = route.services?.[0];
  for (const s of route.services ?? []) if (best === undefined || s.weight > best.weight) best = s;
  return best?.name ?? '';
}

/** Every service a route may send to: `service`, `services` and the canary rules'. */
export function routeServiceNames(route: {
  readonly service?: string | undefined;
  readonly services?: RouteServicesConfig | undefined;
  readonly canary?: readonly CanaryRuleConfig[] | undefined;
}): Set<string> {
  const names = new Set<string>();
  if (route.service !== undefined) names.add(route.service);
  for (const s of route.services ?? []) names.add(s.name);
  for (const c of route.canary ?? []) names.add(c.service);
  return names;
}

/** Exactly one of `service` and `services`; weights with a positive sum; known services; sound rules. */
export const checkServiceSplit: ConfigCheck = (config, report) => {
  const known = config.keys('services');
  const unknown = (where: PathSegment[], name: string) => {
    if (known === undefined || known.includes(name)) return;
    report(
      where,
      `names an unknown service "${name}" ` +
        (known.length > 0 ? `(expected one of: ${known.join(', ')})` : '(no services are defined)'),
    );
  };
  const count = config.length('routes');
  for (let i = 0; i < count; i++) {
    const route = (...rest: PathSegment[]) => ['routes', i, ...rest];
    const hasService = config.has(...route('service'));
    const hasServices = config.has(...route('services'));
    if (hasService && hasServices)
      report(route('services'), 'must not be set together with `service`: use one or the other');
    // neither: router/policy-config.ts reports it, unless the route answers itself
    const services = config.valid(RouteServices, ...route('services'));
    if (services !== undefined) {
      const seen = new Map<string, number>();
      let sum = 0;
      services.forEach((s, j) => {
        sum += s.weight;
        unknown(route('services', j, 'name'), s.name);
        const other = seen.get(s.name);
        if (other !== undefined)
          report(route('services', j, 'name'), `repeats services[${other}]: name each service once`);
        else seen.set(s.name, j);
      });
      if (sum <= 0) report(route('services'), 'must have weights that sum to a positive number');
    }
    const canaryCount = config.length(...route('canary'));
    for (let j = 0; j < canaryCount; j++) {
      const rule = config.valid(CanaryRule, ...route('canary', j));
      if (rule === undefined) continue;
      if ((rule.header === undefined) === (rule.cookie === undefined))
        report(route('canary', j), 'needs exactly one of `header` and `cookie`');
      unknown(route('canary', j, 'service'), rule.service);
    }
    if (config.has(...route('sticky')) && !hasServices)
      report(route('sticky'), 'needs `services` with weights: a single service has no split to keep');
  }
};
