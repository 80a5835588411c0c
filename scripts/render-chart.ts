/**
 * Renders the Helm chart (deploy/helm/gatehouse) with real Helm (scripts/helm.ts) into the example
 * manifests of deploy/kubernetes, after `helm lint --strict`:
 *
 *   gatehouse.yaml    what runs the gateway (ServiceAccount, ConfigMap, Service, Deployment, HPA, PDB)
 *   monitoring.yaml   what needs prometheus-operator or a Grafana sidecar (metrics Service,
 *                     ServiceMonitor, PrometheusRule, dashboard ConfigMap)
 *
 * both from deploy/kubernetes/values.yaml. The chart carries copies of the alert rules and the
 * dashboard (Helm reads files only inside the chart); they are copied from deploy/ first.
 *
 *   npx tsx scripts/render-chart.ts           # write
 *   npx tsx scripts/render-chart.ts --check   # exit 1 if anything written would differ
 */
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { helm } from './helm.js';

export const repoRoot = resolve(import.meta.dirname, '..');
export const CHART = 'deploy/helm/gatehouse';
export const EXAMPLE_VALUES = 'deploy/kubernetes/values.yaml';
export const RELEASE = 'gatehouse';
export const NAMESPACE = 'gatehouse';

/** deploy/ files the chart carries a copy of: [source, copy in the chart] */
export const CHART_COPIES: ReadonlyArray<readonly [string, string]> = [
  ['deploy/prometheus/alerts.yml', `${CHART}/files/alerts.yml`],
  ['deploy/grafana/gatehouse-dashboard.json', `${CHART}/files/gatehouse-dashboard.json`],
];

const OUTPUTS: ReadonlyArray<{ file: string; templates: string[]; about: string }> = [
  {
    file: 'deploy/kubernetes/gatehouse.yaml',
    templates: ['serviceaccount', 'secret', 'configmap', 'service', 'deployment', 'hpa', 'pdb'],
    about: 'the gateway',
  },
  {
    file: 'deploy/kubernetes/monitoring.yaml',
    templates: ['metrics-service', 'servicemonitor', 'prometheusrule', 'dashboard'],
    about: 'monitoring (needs the prometheus-operator CRDs and a Grafana dashboard sidecar)',
  },
];

/** `helm template` of the chart: the manifests as one YAML stream. */
export function template(valuesFiles: string[], set: string[] = []): string {
  return helm(
    [
      'template',
      RELEASE,
      CHART,
      '--namespace',
      NAMESPACE,
      ...valuesFiles.flatMap((f) => ['--values', f]),
      ...set.flatMap((s) => ['--set', s]),
    ],
    repoRoot,
  );
}

/**
 * helm's output cut into its documents, by the template each came from (helm heads every
 * document with `# Source: <chart>/templates/<name>.yaml`); the text of each is kept as is.
 */
export function documentsBySource(stream: string): Map<string, string[]> {
  const bySource = new Map<string, string[]>();
  for (const doc of stream.split(/^---\n/m)) {
    const source = /^# Source: [^/]+\/templates\/(.+)\.yaml$/m.exec(doc)?.[1];
    if (source === undefined) continue;
    bySource.set(source, [...(bySource.get(source) ?? []), doc]);
  }
  return bySource;
}

export function lint(valuesFiles: string[]): string {
  return helm(['lint', '--strict', CHART, ...valuesFiles.flatMap((f) => ['--values', f])], repoRoot);
}

/** What the example files should hold. */
export function renderExamples(): Map<string, string> {
  const out = new Map<string, string>();
  const rendered = template([EXAMPLE_VALUES]);
  const covered = new Set(OUTPUTS.flatMap((o) => o.templates));
  for (const source of documentsBySource(rendered).keys())
    if (!covered.has(source)) throw new Error(`templates/${source}.yaml is in no example file`);
  for (const { file, templates, about } of OUTPUTS) {
    const header =
      `# Gatehouse on Kubernetes: ${about}.\n` +
      `# Rendered by scripts/render-chart.ts (helm template ${RELEASE} ${CHART} --namespace ${NAMESPACE}\n` +
      `# --values ${EXAMPLE_VALUES}); do not edit: change the chart or the values and render again.\n`;
    const docs = documentsBySource(rendered);
    const parts = templates.flatMap((t) => docs.get(t) ?? []); // nothing for a template off
    out.set(file, header + parts.map((d) => '---\n' + d).join(''));
  }
  return out;
}

function main(check: boolean): number {
  let stale = 0;
  for (const [source, copy] of CHART_COPIES) {
    if (readFileSync(join(repoRoot, source), 'utf8') === readFileSync(join(repoRoot, copy), 'utf8')) continue;
    if (check) {
      process.stderr.write(`${copy} differs from ${source}\n`);
      stale++;
    } else copyFileSync(join(repoRoot, source), join(repoRoot, copy));
  }
  process.stdout.write(lint([EXAMPLE_VALUES]));
  for (const [file, text] of renderExamples()) {
    const path = join(repoRoot, file);
    let current = '';
    try {
      current = readFileSync(path, 'utf8');
    } catch {
      // not rendered yet
    }
    if (current === text) continue;
    if (check) {
      process.stderr.write(`${file} is not what the chart renders: run npx tsx scripts/render-chart.ts\n`);
      stale++;
    } else {
      writeFileSync(path, text);
      process.stdout.write(`wrote ${file}\n`);
    }
  }
  return stale === 0 ? 0 : 1;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = main(process.argv.includes('--check'));
}
