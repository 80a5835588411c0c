import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.js';
import { formatProblem } from '../../src/config/problems.js';
import { jsonSchema } from '../../src/config/schema.js';

/** The messages of the problems `yaml` has, by path. */
function messages(yaml: string): Record<string, string> {
  const result = loadConfigText(yaml, 'gw.yaml', { env: {} });
  if (result.ok) return {};
  return Object.fromEntries(result.problems.map((p) => [p.path, p.message]));
}

describe('problem messages', () => {
  it('say what is expected, in words', () => {
    expect(
      messages(
        [
          'listen: { port: 70000 }',
          'admin: { port: "x" }',
          'workers: auto-ish',
          'trustedProxies: 10.0.0.0/8',
          'limits: { bodySize: 10 megs, requestTimeout: 1w }',
          'shutdown: { drainTimeout: 30d }',
          'services:',
          '  a: { targets: [], pool: { connections: 0 }, balancer: fastest }',
          '  b: { targets: [http://127.0.0.1:1/api] }',
          'routes:',
          '  - { name: "-x", match: { path: api, host: "a.example.com:80", methods: [GET, GET] }, service: a, stripPrefix: api }',
          '  - { name: y, match: { path: /y }, service: a, extra: true }',
          '  - name: z',
          'logging: { level: 1 }',
        ].join('\n'),
      ),
    ).toEqual({
      'listen.port': 'must be a port number from 0 to 65535 (0 = any free port)',
      'admin.port': 'must be a port number from 0 to 65535 (0 = any free port)',
      workers: 'must be a number of processes (1 or more) or "auto" (one per CPU core)',
      trustedProxies: 'must be a list',
      'limits.bodySize': 'must be a size such as "512b", "64kb", "10mb" or "1gb", or a number of bytes',
      'limits.requestTimeout':
        'must be a duration such as "250ms", "10s", "5m", "1h" or "1d" (at most 24 days), or a number of milliseconds',
      'shutdown.drainTimeout':
        'must be a duration such as "250ms", "10s", "5m", "1h" or "1d" (at most 24 days), or a number of milliseconds',
      'services.a.targets': 'must list at least one item',
      'services.a.pool.connections': 'must be at least 1',
      'services.a.balancer': 'must be one of: "round-robin", "least-request", "random"',
      'services.b.targets[0]':
        'must be an upstream origin such as "http://10.0.0.5:8080" (http or https, no path)',
      'routes[0].name':
        'must be a name of letters, digits, "_", ".", ":" and "-", starting with a letter or digit',
      'routes[0].match.path': 'must be a path pattern starting with "/", such as "/api/orders/*"',
      'routes[0].match.host':
        'must be a host name such as "api.example.com", or "*." and a domain such as "*.example.com" (no port)',
      'routes[0].match.methods': 'must not list the same item twice',
      'routes[0].stripPrefix': 'must be a path starting with "/", such as "/api"',
      'routes[1].extra':
        'unknown key (expected one of: name, match, service, auth, permissions, rateLimit, stripPrefix, services, canary, sticky, limits, timeouts, retry, cors, ip, transform, respond, redirect)',
      'routes[2].match': 'is required',
      'routes[2].service':
        'is required (or `services`), unless the route answers itself (`respond` or `redirect`)',
      'logging.level': 'must be one of: "fatal", "error", "warn", "info", "debug", "trace", "silent"',
    });
  });

  it('name the type a value must have', () => {
    expect(messages('listen: { host: 1 }\nadmin: []\nlimits: { bodySize: true }\nservices: [a]\n')).toEqual({
      'listen.host': 'must be a string',
      admin: 'must be a mapping (key: value)',
      'limits.bodySize': 'must be a size such as "512b", "64kb", "10mb" or "1gb", or a number of bytes',
      services: 'must be a mapping (key: value)',
    });
  });

  it('report one problem per field', () => {
    const result = loadConfigText('listen: { port: -1.5 }\n', 'gw.yaml', { env: {} });
    expect(result.ok ? [] : result.problems.map((p) => p.path)).toEqual(['listen.port']);
  });
});

describe('durations', () => {
  const lines = (yaml: string) => {
    const result = loadConfigText(yaml, 'gw.yaml', { env: {} });
    return result.ok ? ['(ok)'] : result.problems.map(formatProblem);
  };
  const service = (settings: string) =>
    `services:\n  a:\n    targets: [http://127.0.0.1:1]\n    ${settings}\n`;

  it('refuses the zero health checks and timeouts that passed before, naming field and file', () => {
    expect(lines(service('healthCheck: { interval: 0s, timeout: 0 }'))).toEqual([
      'gw.yaml:4:20: services.a.healthCheck.interval: must be at least 100ms, not "0s": each check is a request to every target',
      'gw.yaml:4:34: services.a.healthCheck.timeout: must be at least 1ms, not 0: at 0 a check would have no timeout',
    ]);
    expect(lines(service('timeouts: { connect: 0, response: 0ms }'))).toEqual([
      'gw.yaml:4:17: services.a.timeouts.connect: must be at least 1ms, not 0: at 0 a connection attempt would have no timeout',
      'gw.yaml:4:29: services.a.timeouts.response: must be at least 1ms, not "0ms": at 0 a response would have no timeout',
    ]);
    expect(
      lines(
        'limits: { keepAliveTimeout: 0, headersTimeout: 50ms }\nredis: { url: redis://x, timeout: 0s }\n',
      ),
    ).toEqual([
      'gw.yaml:1:32: limits.headersTimeout: must be at least 100ms, not "50ms": node enforces it at most every 100 ms, and at 0 a client could take forever to send its headers',
      'gw.yaml:1:11: limits.keepAliveTimeout: must be at least 1ms, not 0: at 0 node never closes an idle keep-alive connection',
      'gw.yaml:2:26: redis.timeout: must be at least 1ms, not "0s": 0 would mean no timeout at all',
    ]);
    // a health check timeout must leave room before the next check
    expect(lines(service('healthCheck: { interval: 1s, timeout: 1s }'))).toEqual([
      'gw.yaml:4:34: services.a.healthCheck.timeout: must be shorter than healthCheck.interval (1000 ms)',
    ]);
  });

  it('accept the minimum itself, and 0 where it has a documented meaning', () => {
    expect(
      lines(
        service('healthCheck: { interval: 100ms, timeout: 1 }\n    timeouts: { connect: 1ms, response: 1 }'),
      ),
    ).toEqual(['(ok)']);
    expect(
      lines(
        'limits: { requestTimeout: 0 }\nshutdown: { drainTimeout: 0s }\n' +
          service('retry: { backoff: 0, maxBackoff: 0ms, maxRetryAfter: 0 }'),
      ),
    ).toEqual(['(ok)']);
  });

  it('every duration in the schema states its minimum or what 0 means', () => {
    const durations: string[] = [];
    const walk = (node: unknown, path: string) => {
      if (typeof node !== 'object' || node === null) return;
      const n = node as Record<string, unknown>;
      if (typeof n.description === 'string' && n.description.startsWith('a duration:')) {
        durations.push(path);
        // min: the integer branch says so, and the description
        const integer = (n.anyOf as Array<Record<string, unknown>>).find((o) => o.type === 'integer');
        const min = integer?.minimum;
        if (min === 0) expect(n.description, path).toMatch(/; 0 = ./);
        else expect(n.description, path).toMatch(/\(at least \d+m?s\)/);
        return;
      }
      for (const [k, v] of Object.entries(n)) walk(v, path === '' ? k : `${path}.${k}`);
    };
    walk(jsonSchema(), '');
    expect(durations.length).toBeGreaterThanOrEqual(24); // all of them were found
  });
});

describe('the JSON Schema `gatehouse schema` prints', () => {
  const schema = jsonSchema() as {
    $schema: string;
    required?: string[];
    additionalProperties: boolean;
    properties: Record<string, { required?: string[]; properties?: object; items?: { required?: string[] } }>;
  };

  it('describes every top-level key and refuses unknown ones', () => {
    expect(schema.$schema).toBe('http://json-schema.org/draft-07/schema#');
    expect(schema.additionalProperties).toBe(false);
    expect(Object.keys(schema.properties)).toEqual(
      expect.arrayContaining([
        'listen',
        'admin',
        'workers',
        'trustedProxies',
        'limits',
        'services',
        'routes',
        'logging',
      ]),
    );
  });

  it('makes keys with defaults optional, so that editors accept a short file', () => {
    expect(schema.required).toBeUndefined();
    expect(schema.properties.listen?.required).toBeUndefined();
    // `service` is not required: `services` may stand for it, and a route may answer itself
    // (`respond`, `redirect`); checks say so
    expect(schema.properties.routes?.items?.required).toEqual(['name', 'match']);
  });

  it('is plain JSON', () => {
    expect(JSON.parse(JSON.stringify(schema))).toEqual(schema);
  });
});
