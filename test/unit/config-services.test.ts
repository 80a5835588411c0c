/** The `services` section: targets or discovery, resilience settings, and their cross-checks. */
import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.js';
import { formatProblem } from '../../src/config/problems.js';

const load = (services: string, extra = '') =>
  loadConfigText(
    `${extra}services:\n${services}\nroutes:\n  - { name: r, match: { path: /x }, service: s }\n`,
    'g.yaml',
    {
      env: {},
    },
  );
const problems = (services: string, extra = '') => {
  const r = load(services, extra);
  return r.ok ? [] : r.problems.map(formatProblem);
};

describe('services config', () => {
  it('takes DNS discovery instead of targets', () => {
    const r = load(
      '  s: { discovery: { dns: orders.shop.svc.cluster.local, port: 8080 } }',
      'dns: { servers: [127.0.0.1:5353] }\n',
    );
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.config.services.s?.discovery).toEqual({
      dns: 'orders.shop.svc.cluster.local',
      port: 8080,
      refresh: 10_000,
      scheme: 'http',
    });
    expect(r.config.dns).toEqual({ servers: ['127.0.0.1:5353'], timeout: 2000 });
  });

  it('takes an SRV name without a port', () => {
    expect(problems('  s: { discovery: { dns: _http._tcp.orders.shop.svc.cluster.local } }')).toEqual([]);
  });

  it('needs targets or discovery, not both, and a port for A lookups, none for SRV', () => {
    expect(problems('  s: { balancer: random }')).toEqual([
      'g.yaml:2:3: services.s.targets: is required: list the targets, or find them with `discovery`',
    ]);
    expect(problems('  s: { targets: [http://127.0.0.1:1], discovery: { dns: a.b, port: 1 } }')).toEqual([
      'g.yaml:2:39: services.s.discovery: cannot be used together with `targets`: choose one',
    ]);
    expect(problems('  s: { discovery: { dns: a.b } }')).toEqual([
      'g.yaml:2:8: services.s.discovery.port: is required for an A/AAAA lookup of "a.b"',
    ]);
    expect(problems('  s: { discovery: { dns: _http._tcp.a.b, port: 80 } }')).toEqual([
      'g.yaml:2:42: services.s.discovery.port: must not be set for an SRV lookup ("_http._tcp.a.b"): the records carry the port',
    ]);
  });

  it('rejects contradicting resilience settings, naming the field', () => {
    const base = '  s:\n    targets: [http://127.0.0.1:1]\n';
    expect(problems(base + '    retry: { backoff: 2s, maxBackoff: 1s }')).toEqual([
      'g.yaml:4:14: services.s.retry.backoff: must not be longer than retry.maxBackoff (1000 ms)',
    ]);
    expect(problems(base + '    healthCheck: { interval: 1s, timeout: 2s }')).toEqual([
      'g.yaml:4:34: services.s.healthCheck.timeout: must be shorter than healthCheck.interval (1000 ms)',
    ]);
    expect(problems(base + '    healthCheck: { interval: 1s, timeout: 1000 }')).toEqual([
      'g.yaml:4:34: services.s.healthCheck.timeout: must be shorter than healthCheck.interval (1000 ms)',
    ]);
    expect(problems(base + '    passiveHealth: { ejectFor: 10m }')).toEqual([
      'g.yaml:4:22: services.s.passiveHealth.ejectFor: must not be longer than passiveHealth.maxEjectFor (300000 ms)',
    ]);
  });

  it('rejects bad values with clear messages', () => {
    const base = '  s:\n    targets: [http://127.0.0.1:1]\n';
    expect(problems(base + '    balancer: fastest')[0]).toMatch(
      /services\.s\.balancer: must be one of: "round-robin", "least-request", "random"/,
    );
    expect(problems(base + '    retry: { on: [connect-error, 404] }')[0]).toMatch(
      /services\.s\.retry\.on\[1\]: must be "connect-error", "timeout", "reset" or a 5xx status code/,
    );
    expect(problems(base + '    circuitBreaker: { errorRate: 1.5 }')[0]).toMatch(
      /services\.s\.circuitBreaker\.errorRate/,
    );
    expect(problems(base + '    healthCheck: { path: health }')[0]).toMatch(
      /services\.s\.healthCheck\.path: must be a path/,
    );
    expect(problems('  s: { discovery: { dns: "bad name!", port: 1 } }')[0]).toMatch(
      /services\.s\.discovery\.dns: must be a DNS name/,
    );
    expect(problems('  s: { targets: [http://127.0.0.1:1] }', 'dns: { servers: [nameserver] }\n')[0]).toMatch(
      /dns\.servers\[0\]: must be a DNS server address/,
    );
  });

  it('fills in every resilience default', () => {
    const r = load('  s: { targets: [http://127.0.0.1:1], healthCheck: {} }');
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.config.services.s?.healthCheck).toEqual({
      path: '/health',
      interval: 5000,
      timeout: 1000,
      healthyAfter: 2,
      unhealthyAfter: 3,
    });
  });
});
