/**
 * Weighted and canary routing, without a socket: the choice functions (smooth weighted round
 * robin, the sticky hash, the Cookie lookup), the stage on request contexts, and the config
 * checks with their file:line messages.
 */
import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.js';
import { formatProblem } from '../../src/config/problems.js';
import { createSplit, SERVICES, serviceSplit } from '../../src/stages/service-split/index.js';
import { cookieValue, hash32, SmoothWeighted, stickyIndex } from '../../src/stages/service-split/split.js';
import { Service } from '../../src/upstream/service.js';
import { configFrom } from '../helpers/gateway.js';
import { testContext, testDeps } from '../helpers/stage-context.js';

describe('SmoothWeighted', () => {
  it('gives each index exactly its weight in every cycle, spread out', () => {
    const rr = new SmoothWeighted([5, 95]);
    const picks = Array.from({ length: 100 }, () => rr.next());
    expect(picks.filter((p) => p === 0)).toHaveLength(5);
    // spread: the five picks of index 0 are never next to each other
    for (let i = 1; i < picks.length; i++) expect(picks[i] === 0 && picks[i - 1] === 0).toBe(false);
    const counts = [0, 0, 0];
    const three = new SmoothWeighted([1, 2, 3]);
    for (let i = 0; i < 6000; i++) counts[three.next()]!++;
    expect(counts).toEqual([1000, 2000, 3000]);
  });

  it('never picks a weight of 0', () => {
    const rr = new SmoothWeighted([0, 3, 0, 1]);
    const picks = new Set(Array.from({ length: 400 }, () => rr.next()));
    expect(picks).toEqual(new Set([1, 3]));
  });
});

describe('stickyIndex', () => {
  it('is a pure function of the subject, spread by the weights', () => {
    const cumulative = [5, 100];
    expect(stickyIndex('c:alice', cumulative)).toBe(stickyIndex('c:alice', cumulative));
    expect(hash32('c:alice')).toBe(hash32('c:alice'));
    expect(hash32('c:alice')).not.toBe(hash32('c:alicf'));
    let first = 0;
    for (let i = 0; i < 10_000; i++) if (stickyIndex(`c:user-${i}`, cumulative) === 0) first++;
    // 5 % of 10 000 subjects, within 1 %
    expect(Math.abs(first / 10_000 - 0.05)).toBeLessThanOrEqual(0.01);
  });

  it('skips services of weight 0', () => {
    for (let i = 0; i < 1000; i++) expect(stickyIndex(`ip:10.0.0.${i}`, [0, 10, 10])).toBe(1);
  });
});

describe('cookieValue', () => {
  it('finds one cookie by its exact name', () => {
    expect(cookieValue('a=1; canary=always; b=2', 'canary')).toBe('always');
    expect(cookieValue('canary=always', 'canary')).toBe('always');
    expect(cookieValue('canary="always"', 'canary')).toBe('always');
    expect(cookieValue('xcanary=always; canaryx=1', 'canary')).toBeUndefined();
    expect(cookieValue('canary=first; canary=second', 'canary')).toBe('first');
    expect(cookieValue('', 'canary')).toBeUndefined();
    expect(cookieValue(';;=;canary', 'canary')).toBeUndefined();
    expect(cookieValue(undefined, 'canary')).toBeUndefined();
  });
});

describe('the service-split stage', () => {
  const noTargets = {
    origins: [],
    start: () => undefined,
    ready: async () => undefined,
    close: () => undefined,
  };
  const config = configFrom(`
services: { a: { targets: ["http://127.0.0.1:9"] }, b: { targets: ["http://127.0.0.1:9"] } }
routes:
  - name: w
    match: { path: /w }
    services: [{ name: a, weight: 1 }, { name: b, weight: 3 }]
    canary: [{ header: X-Canary, value: always, service: a }, { cookie: canary, value: b, service: b }]
  - { name: plain, match: { path: /p }, service: a }
  - { name: sticky, match: { path: /s }, services: [{ name: a, weight: 1 }, { name: b, weight: 1 }], sticky: consumer }
`);
  const services = new Map(
    Object.entries(config.services).map(([name, svc]) => [
      name,
      new Service(name, svc, { source: noTargets }),
    ]),
  );
  const a = services.get('a')!;
  const b = services.get('b')!;
  const build = (i: number) => serviceSplit.build(config.routes[i]!, config, testDeps([SERVICES, services]));

  it('is not compiled for a route with one service and no canary', () => {
    expect(build(1)).toBeNull();
  });

  it('canary rules first (header, then cookie), then the weights', () => {
    const stage = build(0)!;
    const ctx = testContext({ headers: { 'x-canary': 'always', cookie: 'canary=b' } });
    expect(stage.onRequest?.(ctx)).toBeUndefined();
    expect(ctx.service).toBe(a);
    const byCookie = testContext({ headers: { cookie: 'canary=b' } });
    stage.onRequest?.(byCookie);
    expect(byCookie.service).toBe(b);
    const picked = Array.from({ length: 8 }, () => {
      const c = testContext({ headers: { 'x-canary': 'Always' } });
      stage.onRequest?.(c);
      return c.service?.name ?? '';
    });
    expect(picked.filter((n) => n === 'a')).toHaveLength(2);
  });

  it('sticky: by consumer id when there is one, by client address otherwise', () => {
    const stage = build(2)!;
    const pick = (consumer: string | null, ip: string) => {
      const c = testContext({
        clientIp: ip,
        consumer:
          consumer === null ? null : ({ id: consumer, tier: '', permissions: [], method: 'jwt' } as never),
      });
      stage.onRequest?.(c);
      return c.service?.name ?? '';
    };
    const byConsumer = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const first = pick(`u${i}`, '10.0.0.1');
      // another address, same consumer: same service
      expect(pick(`u${i}`, `10.0.0.${i + 2}`)).toBe(first);
      byConsumer.add(first);
    }
    expect(byConsumer).toEqual(new Set(['a', 'b']));
    const anonymous = pick(null, '192.0.2.1');
    for (let i = 0; i < 10; i++) expect(pick(null, '192.0.2.1')).toBe(anonymous);
  });

  it('without a weighted service, a request no rule matches keeps the primary', () => {
    const stage = createSplit([], [], [], false, a);
    const c = testContext();
    stage.onRequest?.(c);
    expect(c.service).toBe(a);
  });
});

describe('routing config checks', () => {
  const problems = (route: string) => {
    const r = loadConfigText(
      `services: { a: { targets: ["http://127.0.0.1:9"] }, b: { targets: ["http://127.0.0.1:9"] } }\nroutes:\n  - ${route}\n`,
      'g.yaml',
      { env: {} },
    );
    return r.ok ? [] : r.problems.map(formatProblem);
  };

  it('takes services with weights, canary rules and sticky', () => {
    expect(
      problems(
        '{ name: r, match: { path: /x }, services: [{ name: a, weight: 9 }, { name: b, weight: 1 }], sticky: consumer, canary: [{ header: x-canary, value: "1", service: b }] }',
      ),
    ).toEqual([]);
  });

  it('names what is wrong, with its line', () => {
    expect(
      problems('{ name: r, match: { path: /x }, service: a, services: [{ name: b, weight: 1 }] }'),
    ).toEqual([
      'g.yaml:3:49: routes[0].services: must not be set together with `service`: use one or the other',
    ]);
    expect(problems('{ name: r, match: { path: /x } }')).toEqual([
      'g.yaml:3:5: routes[0].service: is required (or `services`), unless the route answers itself (`respond` or `redirect`)',
    ]);
    expect(
      problems(
        '{ name: r, match: { path: /x }, services: [{ name: a, weight: 0 }, { name: c, weight: 0 }] }',
      ),
    ).toEqual([
      'g.yaml:3:37: routes[0].services: must have weights that sum to a positive number',
      'g.yaml:3:74: routes[0].services[1].name: names an unknown service "c" (expected one of: a, b)',
    ]);
    expect(
      problems(
        '{ name: r, match: { path: /x }, services: [{ name: a, weight: 1 }, { name: a, weight: 2 }] }',
      ),
    ).toEqual(['g.yaml:3:74: routes[0].services[1].name: repeats services[0]: name each service once']);
    expect(problems('{ name: r, match: { path: /x }, services: [{ name: a, weight: -1 }] }')).toEqual([
      'g.yaml:3:59: routes[0].services[0].weight: must be at least 0',
    ]);
    expect(
      problems(
        '{ name: r, match: { path: /x }, service: a, canary: [{ header: h, cookie: c, value: v, service: z }] }',
      ),
    ).toEqual([
      'g.yaml:3:58: routes[0].canary[0]: needs exactly one of `header` and `cookie`',
      'g.yaml:3:92: routes[0].canary[0].service: names an unknown service "z" (expected one of: a, b)',
    ]);
    expect(problems('{ name: r, match: { path: /x }, service: a, sticky: consumer }')).toEqual([
      'g.yaml:3:49: routes[0].sticky: needs `services` with weights: a single service has no split to keep',
    ]);
  });
});
