import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { deepFreeze, withDefaults } from '../../src/config/defaults.js';
import { loadConfigFile, loadConfigText, readConfig, type LoadResult } from '../../src/config/load.js';
import { ConfigError, formatProblem } from '../../src/config/problems.js';
import { ConfigSchema, type GatewayConfig } from '../../src/config/schema.js';

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/config/${name}`, import.meta.url));
const lines = (result: LoadResult) => (result.ok ? ['(ok)'] : result.problems.map(formatProblem));
const loadText = (yaml: string, env: NodeJS.ProcessEnv = {}) => loadConfigText(yaml, 'gw.yaml', { env });

function load(yaml: string): GatewayConfig {
  const result = loadText(yaml);
  if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
  return result.config;
}

function allFrozen(value: unknown, where = 'config'): string[] {
  if (typeof value !== 'object' || value === null) return [];
  const own = Object.isFrozen(value) ? [] : [where];
  return own.concat(...Object.entries(value).map(([k, v]) => allFrozen(v, `${where}.${k}`)));
}

describe('loading a valid file', () => {
  it('applies the defaults and converts durations and sizes', async () => {
    const result = await loadConfigFile(fixture('good.yaml'), { env: {} });
    if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
    const { config } = result;
    expect(config.workers).toBe('auto');
    expect(config.limits).toEqual({
      bodySize: 1024 * 1024,
      headersTimeout: 5000,
      requestTimeout: 60_000,
      keepAliveTimeout: 5000, // default
      maxHeaderSize: 16 * 1024, // default
      maxUrlLength: 8 * 1024, // default
      headersWithUnderscores: 'drop', // default
      sendTimeout: 60_000, // default
    });
    expect(config.services.orders?.timeouts).toEqual({ connect: 500, response: 1500 });
    expect(config.services.orders?.pool).toEqual({ connections: 16, keepAlive: 30_000 });
    // a service that sets nothing but its targets gets every default
    expect(config.services.users).toEqual({
      targets: ['http://127.0.0.1:3002'],
      balancer: 'round-robin',
      timeouts: { connect: 2000, response: 15_000 },
      pool: { connections: 128, keepAlive: 60_000 },
      protocol: 'http1',
      passiveHealth: { consecutiveErrors: 5, ejectFor: 10_000, maxEjectFor: 300_000, maxEjectedPercent: 50 },
      circuitBreaker: {
        enabled: true,
        errorRate: 0.5,
        window: 10_000,
        minRequests: 20,
        openFor: 30_000,
        probes: 3,
      },
      retry: {
        attempts: 3,
        backoff: 50,
        maxBackoff: 1000,
        on: ['connect-error', 'reset', 502, 503, 504],
        maxRetryAfter: 2000,
        budget: 0.2,
        minRetries: 10,
        deadline: 30_000,
      },
    });
    expect(config.routes.map((r) => r.name)).toEqual(['orders-read', 'orders-write', 'orders-any', 'users']);
    expect(config.routes[0]?.match.methods).toEqual(['GET', 'HEAD']);
    expect(config.shutdown.drainTimeout).toBe(2000);
    expect(config.logging.level).toBe('warn');
  });

  it('returns a deeply frozen config', () => {
    const config = load(
      'services:\n  a: { targets: [http://127.0.0.1:1] }\nroutes:\n  - { name: r, match: { path: /x }, service: a }\n',
    );
    expect(allFrozen(config)).toEqual([]);
    expect(() => {
      (config.listen as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(() => (config.routes as unknown[]).push({})).toThrow(TypeError);
  });

  it('freezes nothing it did not create: the schema defaults stay usable', () => {
    const a = load('');
    const b = load('');
    expect(a).toEqual(b);
    expect(a.trustedProxies).not.toBe(b.trustedProxies);
    expect(Object.isFrozen(ConfigSchema.properties.trustedProxies.default)).toBe(false);
    expect(Object.isFrozen(ConfigSchema.properties.listen.default)).toBe(false);
  });

  it('treats an empty file, a comment-only file and empty sections as "all defaults"', () => {
    const empty = load('');
    expect(empty).toEqual(load('# nothing here\n'));
    expect(empty).toEqual(load('routes:\n# - { name: a }\nservices:\nadmin:\n'));
    expect(empty.listen).toMatchObject({
      host: '0.0.0.0',
      port: 8080,
      http2: { enabled: true, cleartext: false },
    });
    expect(empty.listen.tls).toBeUndefined();
    expect(empty.admin).toEqual({
      host: '127.0.0.1',
      port: 9080,
      token: '',
      tokens: [],
      auditEntries: 1000,
      ui: false,
    });
    expect(empty.workers).toBe(1);
    expect(empty.routes).toEqual([]);
    expect(empty.services).toEqual({});
  });

  it('accepts a route listing methods beside one taking all methods on the same path', () => {
    const config = load(
      'services: { a: { targets: [http://127.0.0.1:1] } }\nroutes:\n' +
        '  - { name: any, match: { path: /x }, service: a }\n' +
        '  - { name: get, match: { path: /x, methods: [GET] }, service: a }\n',
    );
    expect(config.routes).toHaveLength(2);
  });

  it('gives a service called "constructor" its defaults like any other', () => {
    const config = load('services:\n  constructor: { targets: [http://127.0.0.1:1] }\n');
    const name: string = 'constructor';
    expect(Object.hasOwn(config.services, name)).toBe(true);
    expect(config.services[name]?.pool.connections).toBe(128);
  });
});

describe('never mutating the input', () => {
  it('withDefaults returns a new tree and leaves its input alone', () => {
    const input = {
      listen: { port: 1 },
      services: { a: { targets: ['http://127.0.0.1:1'], timeouts: { connect: '1s' } } },
      routes: [{ name: 'r', match: { path: '/' }, service: 'a' }],
    };
    const before = structuredClone(input);
    const out = withDefaults(ConfigSchema, input) as typeof input & { admin: unknown };
    expect(input).toEqual(before);
    expect(out).not.toBe(input);
    expect(out.listen).not.toBe(input.listen);
    expect(out.services.a).not.toBe(input.services.a);
    expect(out.admin).toEqual({
      host: '127.0.0.1',
      port: 9080,
      token: '',
      tokens: [],
      auditEntries: 1000,
      ui: false,
    });
    expect((out.services.a as { pool?: unknown }).pool).toEqual({ connections: 128, keepAlive: '60s' });
  });

  it('loading the same text twice gives equal, separate configs', () => {
    const text = readFileSync(fixture('good.yaml'), 'utf8');
    const copy = text.slice();
    const a = loadText(text);
    const b = loadText(text);
    expect(text).toBe(copy);
    expect(a.ok && b.ok).toBe(true);
    if (a.ok && b.ok) {
      expect(a.config).toEqual(b.config);
      expect(a.config.services).not.toBe(b.config.services);
    }
  });

  it('deepFreeze freezes nested arrays and objects', () => {
    const v = deepFreeze({ a: [{ b: 1 }], c: { d: { e: [] as number[] } } });
    expect(allFrozen(v)).toEqual([]);
  });
});

describe('reporting every problem at once', () => {
  it('lists each mistake of the bad fixture with its line and column', () => {
    const result = loadConfigText(readFileSync(fixture('bad.yaml'), 'utf8'), 'bad.yaml', { env: {} });
    expect(lines(result)).toEqual([
      'bad.yaml:2:40: listen.quic: unknown key (expected one of: host, port, tls, http2, plain)',
      'bad.yaml:3:1: admin.token: is required when the admin port binds a non-loopback address (0.0.0.0)',
      'bad.yaml:6:1: workers: must be a number of processes (1 or more) or "auto" (one per CPU core)',
      'bad.yaml:7:30: trustedProxies[1]: must be an IP address or CIDR such as "10.0.0.0/8": "10.1.0.0/40": invalid prefix length',
      'bad.yaml:10:3: limits.headersTimeout: must be a duration from 100ms to 24 days, such as "250ms", "10s", "5m", "1h" or "1d", or a number of milliseconds',
      'bad.yaml:11:12: logging.level: must be one of: "fatal", "error", "warn", "info", "debug", "trace", "silent"',
      'bad.yaml:12:1: colour: unknown key (expected one of: listen, admin, workers, configWatch, trustedProxies, limits, shutdown, services, routes, dns, redis, database, auth, rbac, rateLimit, logging, tracing, cors, ip)',
      'bad.yaml:17:30: services.orders.timeouts.respond: unknown key (expected one of: connect, response)',
      'bad.yaml:18:3: services.empty.targets: is required: list the targets, or find them with `discovery`',
      'bad.yaml:20:3: services.bad name: is not a valid service name: use letters, digits, "_", "." and "-", starting with a letter or digit',
      'bad.yaml:21:3: services._hidden: is not a valid service name: use letters, digits, "_", "." and "-", starting with a letter or digit',
      'bad.yaml:27:5: routes[1].name: must be unique: "orders" is also the name of routes[0]',
      'bad.yaml:29:5: routes[1].service: names an unknown service "order" (expected one of: orders, empty, bad name, _hidden)',
      'bad.yaml:31:5: routes[2].match: matches the same requests as routes[0] ("orders"); make the host, path or methods differ',
      'bad.yaml:36:5: routes[3].stripPrefix: must be whole literal segments at the start of match.path ("/api/*/items"); "/api/v1" is not',
      'bad.yaml:38:14: routes[4].match.path: invalid pattern "/a/**/b": "**" may only be the last segment',
      'bad.yaml:41:14: routes[5].match.path: invalid pattern "/a*": "a*": "*" must be a whole segment',
      'bad.yaml:43:5: routes[6].service: is required (or `services`), unless the route answers itself (`respond` or `redirect`)',
      'bad.yaml:44:39: routes[6].match.methods[1]: must be one of: "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"',
      'bad.yaml:46:24: routes[7].match.unknown: unknown key (expected one of: host, path, methods)',
      'bad.yaml:47:5: routes[7].service: names an unknown service "nope" (expected one of: orders, empty, bad name, _hidden)',
    ]);
  });

  it('reports the line of the key, not of the value below it', () => {
    expect(lines(loadText('\nroutes:\n  name: r\n'))).toEqual(['gw.yaml:2:1: routes: must be a list']);
    const result = loadText('listen:\n  host: 127.0.0.1\nroutes:\n  - name: r\n    match:\n      path: /x\n');
    expect(lines(result)).toEqual([
      'gw.yaml:4:5: routes[0].service: is required (or `services`), unless the route answers itself (`respond` or `redirect`)',
    ]);
    expect(lines(loadText('\nlisten:\n  - 1\n'))).toEqual([
      'gw.yaml:2:1: listen: must be a mapping (key: value)',
    ]);
  });

  it('checks across fields even when other parts fail the schema', () => {
    const result = loadText(
      'workers: 0\nadmin: { host: 10.0.0.1 }\nroutes:\n  - { name: r, match: { path: /x }, service: s }\n',
    );
    expect(lines(result)).toEqual([
      'gw.yaml:1:1: workers: must be a number of processes (1 or more) or "auto" (one per CPU core)',
      'gw.yaml:2:1: admin.token: is required when the admin port binds a non-loopback address (10.0.0.1)',
      'gw.yaml:4:37: routes[0].service: names an unknown service "s" (no services are defined)',
    ]);
  });

  it('checks targets and the admin port', () => {
    const result = loadText(
      'listen: { port: 9000 }\nadmin: { port: 9000 }\nservices:\n  a:\n    targets:\n' +
        '      - http://:80\n      - http://user:pw@127.0.0.1:1\n      - http://127.0.0.1:99999\n      - http://ok:1\n',
    );
    expect(lines(result)).toEqual([
      'gw.yaml:2:10: admin.port: must differ from listen.port (both are 9000)',
      'gw.yaml:6:9: services.a.targets[0]: must be a valid URL such as "http://10.0.0.5:8080"; "http://:80" is not',
      'gw.yaml:7:9: services.a.targets[1]: must not contain credentials ("user@"): they would not be sent upstream',
      'gw.yaml:8:9: services.a.targets[2]: must be a valid URL such as "http://10.0.0.5:8080"; "http://127.0.0.1:99999" is not',
    ]);
  });

  it('checks stripPrefix against the pattern', () => {
    const route = (path: string, strip: string) =>
      lines(
        loadText(
          `services: { a: { targets: [http://127.0.0.1:1] } }\nroutes:\n  - { name: r, match: { path: "${path}" }, service: a, stripPrefix: "${strip}" }\n`,
        ),
      );
    expect(route('/api/**', '/api')).toEqual(['(ok)']);
    expect(route('/api/v1/*', '/api/v1/')).toEqual(['(ok)']);
    expect(route('/api/**', '/')).toEqual([
      'gw.yaml:3:56: routes[0].stripPrefix: must not be "/", which strips nothing; remove it',
    ]);
    expect(route('/api/**', '/ap')).toEqual([
      'gw.yaml:3:56: routes[0].stripPrefix: must be whole literal segments at the start of match.path ("/api/**"); "/ap" is not',
    ]);
    expect(route('/*/x', '/api')).toHaveLength(1);
    expect(route('/api/**', '/api/**')).toHaveLength(1);
    expect(route('/api//**', '/api')).toEqual([
      'gw.yaml:3:25: routes[0].match.path: invalid pattern "/api//**": empty segment ("//")',
    ]);
    expect(route('/api/x', '/api//')).toEqual([
      'gw.yaml:3:55: routes[0].stripPrefix: "/api//" is not a valid path prefix: empty segment ("//")',
    ]);
  });

  it('checks the header options: underscores, forwardCredentials, an API key header with "_"', () => {
    expect(load('').auth).toBeUndefined();
    expect(load('auth: { apiKey: { secret: 0123456789abcdef0123 } }').auth?.forwardCredentials).toBe(true);
    expect(
      lines(loadText('limits: { headersWithUnderscores: keep }\nauth: { forwardCredentials: "no" }\n')),
    ).toEqual([
      'gw.yaml:1:11: limits.headersWithUnderscores: must be one of: "drop", "reject", "allow"',
      'gw.yaml:2:9: auth.forwardCredentials: must be true or false',
    ]);
    const underscoreKey = (mode: string) =>
      lines(
        loadText(
          `limits: { headersWithUnderscores: ${mode} }\nauth:\n  apiKey: { header: x_api_key, secret: 0123456789abcdef0123 }\n`,
        ),
      );
    expect(underscoreKey('drop')).toEqual(['(ok)']);
    expect(underscoreKey('reject')).toEqual([
      'gw.yaml:3:13: auth.apiKey.header: "x_api_key" has "_", and limits.headersWithUnderscores: reject refuses every request carrying it; spell it with "-" or choose drop or allow',
    ]);
  });

  it('checks that the tiers routes use exist, the default tier of a route with auth included', () => {
    const withRoute = (route: string, rateLimit: string) =>
      lines(
        loadText(
          'services: { a: { targets: [http://127.0.0.1:1] } }\n' +
            'auth: { apiKey: { secret: 0123456789abcdef0123 } }\n' +
            `routes: [ { name: r, match: { path: /x }, service: a, ${route} } ]\n` +
            `rateLimit: ${rateLimit}\n`,
        ),
      );
    const gold = '{ tiers: { gold: { limits: [{ requests: 1, per: 1s }] } } }';
    // rateLimit absent on a route with auth: tier, so consumers without a tier get defaultTier
    expect(withRoute('auth: [apiKey]', gold)).toEqual([
      'gw.yaml:4:1: rateLimit.defaultTier: names an unknown tier "free" (used by routes[0], whose rateLimit is tier by default: it has auth; tiers: gold)',
    ]);
    expect(withRoute('auth: [apiKey]', `{ defaultTier: gold, ${gold.slice(2)}`)).toEqual(['(ok)']);
    expect(withRoute('auth: [apiKey], rateLimit: "off"', gold)).toEqual(['(ok)']);
    expect(withRoute('auth: [apiKey]', '{}')).toEqual(['(ok)']); // no tiers: off
    expect(withRoute('rateLimit: tier', gold)).toEqual([
      'gw.yaml:4:1: rateLimit.anonymousTier: names an unknown tier "anonymous" (used by routes[0]; tiers: gold)',
      'gw.yaml:4:1: rateLimit.defaultTier: names an unknown tier "free" (used by routes[0]; tiers: gold)',
    ]);
    expect(withRoute('rateLimit: ip', gold)).toEqual([
      'gw.yaml:4:1: rateLimit.anonymousTier: names an unknown tier "anonymous" (used by routes[0]; tiers: gold)',
    ]);
  });

  it('checks the tiers: something to limit, one limit per window, windows of whole seconds', () => {
    expect(lines(loadText('rateLimit:\n  tiers:\n    t: { limits: [] }\n'))).toEqual([
      'gw.yaml:3:5: rateLimit.tiers.t: has neither limits nor a quota',
    ]);
    const limits = (...items: string[]) =>
      lines(
        loadText(
          `rateLimit:\n  tiers:\n    t:\n      limits:\n${items.map((i) => `        - ${i}\n`).join('')}`,
        ),
      );
    expect(
      limits('{ requests: 1, per: 1.5s }', '{ requests: 2, per: 60s }', '{ requests: 3, per: " 1m" }'),
    ).toEqual([
      'gw.yaml:5:26: rateLimit.tiers.t.limits[0].per: must be a whole number of seconds, at least "1s" (got "1.5s")',
      'gw.yaml:7:26: rateLimit.tiers.t.limits[2].per: repeats the window of limits[1]: use one limit per window',
    ]);
  });

  it('decodes a window once: its name as written (keys, headers) and its length', () => {
    const config = load(
      'rateLimit:\n  tiers:\n    t: { limits: [{ requests: 1, per: 1m }, { requests: 5, per: " 1h " }] }\n',
    );
    expect(config.rateLimit.tiers.t?.limits).toEqual([
      { requests: 1, per: { name: '1m', ms: 60_000 } },
      { requests: 5, per: { name: '1h', ms: 3_600_000 } },
    ]);
  });

  it('reports identical routes, comparing hosts without case and methods by overlap', () => {
    const routes = (...matches: string[]) =>
      lines(
        loadText(
          'services: { a: { targets: [http://127.0.0.1:1] } }\nroutes:\n' +
            matches.map((m, i) => `  - { name: r${i}, match: ${m}, service: a }\n`).join(''),
        ),
      );
    expect(routes('{ path: /x, host: A.example.com }', '{ path: /x, host: a.example.com }')).toHaveLength(1);
    expect(routes('{ path: /x, methods: [GET, POST] }', '{ path: /x, methods: [POST] }')).toHaveLength(1);
    expect(routes('{ path: /x, methods: [GET] }', '{ path: /x, methods: [POST] }')).toEqual(['(ok)']);
    expect(routes('{ path: /x }', '{ path: /x, host: a.example.com }')).toEqual(['(ok)']);
    expect(routes('{ path: /*/x }', '{ path: /y/x }')).toEqual(['(ok)']);
    expect(routes('{ path: /*/x }', '{ path: /*/x }')).toEqual([
      'gw.yaml:4:17: routes[1].match: matches the same requests as routes[0] ("r0"); make the host, path or methods differ',
    ]);
  });
});

describe('positions', () => {
  it('gives the column of the key, counted in the file as written (a ${VAR} before it included)', () => {
    const text = 'admin: { token: "${A_LONG_VARIABLE_NAME:-x}${B}", port: x, host: ${C} }\n';
    expect(lines(loadText(text))).toEqual([
      `gw.yaml:1:${text.indexOf('${C}') + 1}: admin.host: environment variable C is not set (use \${C:-default} for a default)`,
      `gw.yaml:1:${text.indexOf('port') + 1}: admin.port: must be a port number from 0 to 65535 (0 = any free port)`,
      `gw.yaml:1:${text.indexOf('"') + 1}: admin.token: environment variable B is not set (use \${B:-default} for a default)`,
    ]);
  });

  it('puts a problem found at the end of the input at the end of the last line', () => {
    expect(lines(loadText('admin: { port: 1\n\n'))).toEqual([
      'gw.yaml:1:17: (yaml): Flow map in block collection must be sufficiently indented and end with a }',
    ]);
  });

  it('counts columns from the start of the line in a file with CRLF line ends', () => {
    expect(lines(loadText('listen:\r\n  port: x\r\n'))).toEqual([
      'gw.yaml:2:3: listen.port: must be a port number from 0 to 65535 (0 = any free port)',
    ]);
  });
});

describe('YAML problems', () => {
  it('reports a syntax error with its line', () => {
    expect(lines(loadText('listen:\n  host: 127.0.0.1\nadmin: { port: 1\n'))).toEqual([
      'gw.yaml:3:17: (yaml): Flow map in block collection must be sufficiently indented and end with a }',
    ]);
    expect(lines(loadText('listen:\n  host: "127.0.0.1\n'))).toHaveLength(1);
  });

  it('reports a duplicate key with the line of the second one', () => {
    expect(lines(loadText('listen:\n  port: 1\n  host: x\n  port: 2\n'))).toEqual([
      'gw.yaml:4:3: (yaml): Map keys must be unique',
    ]);
  });

  it('refuses several documents in one file', () => {
    expect(lines(loadText('listen: {}\n---\nadmin: {}\n'))[0]).toMatch(/^gw\.yaml:2:1: \(yaml\): /);
  });

  it('refuses an alias bomb instead of expanding it', () => {
    const bomb = ['a0: &a0 [x, x, x, x, x, x, x, x, x, x]'];
    for (let i = 1; i < 10; i++)
      bomb.push(
        `a${i}: &a${i} [${Array(10)
          .fill(`*a${i - 1}`)
          .join(', ')}]`,
      );
    const result = loadText(bomb.join('\n'));
    expect(result.ok).toBe(false);
    expect(lines(result)[0]).toMatch(/^gw\.yaml:1:1: \(yaml\): .*alias/i);
  });

  it('refuses a root that is not a mapping', () => {
    const message = 'must be a mapping of settings (key: value), such as "listen: { port: 8080 }"';
    expect(lines(loadText('- a\n- b\n'))).toEqual([`gw.yaml:1:1: (root): ${message}`]);
    expect(lines(loadText('# header\n42\n'))).toEqual([`gw.yaml:2:1: (root): ${message}`]);
    expect(lines(loadText('just a string'))).toEqual([`gw.yaml:1:1: (root): ${message}`]);
  });
});

describe('files', () => {
  it('reports a missing file as a problem of the whole file', async () => {
    const result = await loadConfigFile(fixture('does-not-exist.yaml'));
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.problems).toEqual([
        {
          file: fixture('does-not-exist.yaml'),
          line: 0,
          column: 0,
          path: '(file)',
          message: 'cannot read the config file: no such file',
        },
      ]);
      expect(formatProblem(result.problems[0]!)).toBe(
        `${fixture('does-not-exist.yaml')}: cannot read the config file: no such file`,
      );
    }
  });

  it('readConfig throws a ConfigError listing the problems', async () => {
    const error: unknown = await readConfig(fixture('bad.yaml'), { env: {} }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).problems.length).toBeGreaterThan(10);
    expect((error as ConfigError).message).toContain('bad.yaml:2:40: listen.quic: unknown key');
  });

  it('reads the JWT public key files: missing, a directory, not a key, a private key are problems of their entry', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-pem-'));
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const good = join(dir, 'good.pem');
    writeFileSync(good, publicKey.export({ type: 'spki', format: 'pem' }));
    const secret = join(dir, 'private.pem');
    writeFileSync(secret, privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const garbage = join(dir, 'garbage.pem');
    writeFileSync(garbage, 'not a key\n');
    const folder = join(dir, 'folder.pem');
    mkdirSync(folder);
    const missing = join(dir, 'missing.pem');
    const file = join(dir, 'gatehouse.yaml');
    const yaml = (keys: string[], extra = '') => `services: { s: { targets: ["http://127.0.0.1:1"] } }
routes: [{ name: r, match: { path: /x }, service: s, auth: [jwt] }]
auth:
  jwt:
    algorithms: [ES256]
    publicKeys:
${keys.map((k) => `      - "${k}"`).join('\n')}
${extra}`;

    writeFileSync(file, yaml([good]));
    expect(lines(await loadConfigFile(file, { env: {} }))).toEqual(['(ok)']);

    // every problem at once, the schema's included
    writeFileSync(file, yaml([good, missing, folder, garbage, secret], 'listen: { port: nope }\n'));
    expect(lines(await loadConfigFile(file, { env: {} }))).toEqual([
      `${file}:8:9: auth.jwt.publicKeys[1]: cannot read "${missing}": no such file`,
      `${file}:9:9: auth.jwt.publicKeys[2]: cannot read "${folder}": it is a directory`,
      `${file}:10:9: auth.jwt.publicKeys[3]: "${garbage}" is not a PEM public key ("-----BEGIN PUBLIC KEY-----") or certificate`,
      `${file}:11:9: auth.jwt.publicKeys[4]: "${secret}" holds a private key; give the public key only (the gateway only verifies)`,
      expect.stringMatching(new RegExp(`^${file}:12:11: listen\\.port: `)),
    ]);

    // loading text reads no other file (the gateway's start reads the keys itself)
    expect(lines(loadText(yaml([missing])))).toEqual(['(ok)']);
  });

  it('validates examples/demo.yaml', async () => {
    const demo = fileURLToPath(new URL('../../examples/demo.yaml', import.meta.url));
    expect(lines(await loadConfigFile(demo, { env: {} }))).toEqual(['(ok)']);
  });
});
