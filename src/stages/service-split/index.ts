/**
 * Weighted and canary routing: picks the service of a request whose route has `services` or
 * `canary` (split-config.ts in router/), after authentication and rate limiting (stickiness
 * needs the consumer; a refused request needs no service) and before the proxy, by setting
 * `ctx.service`. The canary rules come first (the first whose header or cookie has its value
 * wins), then the weights: a hash of the consumer id (an anonymous caller's client address)
 * with `sticky: consumer`, else a smooth weighted round robin per instance (split.ts).
 */
import { primaryService, type CanaryRuleConfig } from '../../router/split-config.js';
import type { Service } from '../../upstream/service.js';
import { defineStage, Dependency, type RequestContext, type StageInstance } from '../stage.js';
import { cookieValue, SmoothWeighted, stickyIndex } from './split.js';

/** The runtime's services by name. */
export const SERVICES = new Dependency<ReadonlyMap<string, Service>>('services');

type SplitSection = {
  readonly services: ReadonlyArray<{ readonly name: string; readonly weight: number }> | null;
  readonly canary: readonly CanaryRuleConfig[];
  readonly sticky: boolean;
};

export type Rule = {
  /** lower-case header name, or null for a cookie rule */
  readonly header: string | null;
  readonly cookie: string;
  readonly value: string;
  readonly service: Service;
};

export const serviceSplit = defineStage<SplitSection>({
  name: 'service-split',
  order: 450,
  section(route) {
    if (route.services === undefined && route.canary === undefined) return null;
    return {
      services: route.services ?? null,
      canary: route.canary ?? [],
      sticky: route.sticky === 'consumer',
    };
  },
  create(section, deps, route) {
    const byName = deps.get(SERVICES);
    const service = (name: string): Service => {
      const found = byName.get(name);
      if (found === undefined) throw new Error(`routes "${route.name}": unknown service ${name}`); // checked at load
      return found;
    };
    const rules: Rule[] = section.canary.map((r) => ({
      header: r.header === undefined ? null : r.header.toLowerCase(),
      cookie: r.cookie ?? '',
      value: r.value,
      service: service(r.service),
    }));
    const weighted = section.services?.filter((s) => s.weight > 0) ?? [];
    return createSplit(
      rules,
      weighted.map((s) => service(s.name)),
      weighted.map((s) => s.weight),
      section.sticky,
      service(primaryService(route)),
    );
  },
});

/** The stage's instance over resolved services (exported for unit tests). */
export function createSplit(
  rules: readonly Rule[],
  services: readonly Service[],
  weights: readonly number[],
  sticky: boolean,
  primary: Service,
): StageInstance {
  const cumulative: number[] = [];
  weights.reduce((sum, w) => (cumulative.push(sum + w), sum + w), 0);
  const roundRobin = new SmoothWeighted(weights);
  const pickWeighted =
    services.length <= 1
      ? () => services[0] ?? primary
      : sticky
        ? (ctx: RequestContext) => {
            const consumer = ctx.consumer;
            const subject = consumer !== null ? `c:${consumer.id}` : `ip:${ctx.clientIp}`;
            return services[stickyIndex(subject, cumulative)] as Service;
          }
        : () => services[roundRobin.next()] as Service;
  return {
    onRequest(ctx) {
      for (let i = 0; i < rules.length; i++) {
        const rule = rules[i] as Rule;
        const headers = ctx.req.headers;
        const value = rule.header !== null ? headers[rule.header] : cookieValue(headers.cookie, rule.cookie);
        if (value === rule.value) {
          ctx.service = rule.service;
          return undefined;
        }
      }
      ctx.service = pickWeighted(ctx);
      return undefined;
    },
  };
}
