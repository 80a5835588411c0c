/**
 * The monitoring files in deploy/: the alert rules pass `promtool check rules` and their unit
 * tests, and every query of the Grafana dashboard is valid PromQL. Needs promtool (Debian package
 * `prometheus`, scripts/test-deps.sh); without it every test fails with that hint.
 */
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import {
  allPanels,
  asRecordingRules,
  checkRecordingRules,
  dashboardQueries,
  promtool,
  substituteVariables,
  templateVariables,
  variableValues,
} from '../helpers/promtool.js';

const root = resolve(import.meta.dirname, '..', '..');
const ALERTS = join(root, 'deploy/prometheus/alerts.yml');
const ALERT_TESTS = join(root, 'deploy/prometheus/alerts.test.yml');
const DASHBOARD = join(root, 'deploy/grafana/gatehouse-dashboard.json');

type AlertRule = {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
};
type RuleFile = { groups: Array<{ name: string; rules: AlertRule[] }> };
type AlertTest = { alertname: string; eval_time: string; exp_alerts?: unknown[] };
type RuleTestFile = { rule_files: string[]; tests: Array<{ alert_rule_test?: AlertTest[] }> };

const readYaml = <T>(file: string): T => parse(readFileSync(file, 'utf8')) as T;
const dashboard: unknown = JSON.parse(readFileSync(DASHBOARD, 'utf8'));

describe('deploy/prometheus/alerts.yml', () => {
  it('passes promtool check rules', async () => {
    const run = await promtool(['check', 'rules', ALERTS]);
    expect(run.code, run.output).toBe(0);
  });

  it('passes its promtool unit tests (alerts.test.yml)', async () => {
    const run = await promtool(['test', 'rules', ALERT_TESTS]);
    expect(run.code, run.output).toBe(0);
  });

  it('gives every alert of group gatehouse a for, a severity, a summary and a description', () => {
    const groups = readYaml<RuleFile>(ALERTS).groups;
    expect(groups.map((g) => g.name)).toEqual(['gatehouse']);
    const rules = groups[0]?.rules ?? [];
    expect(rules.length).toBeGreaterThanOrEqual(11);
    for (const rule of rules) {
      expect(rule.for, rule.alert).toMatch(/^\d+[smh]$/);
      expect(rule.labels?.['severity'], rule.alert).toMatch(/^(critical|warning)$/);
      expect(rule.annotations?.['summary'], rule.alert).toBeTruthy();
      expect(rule.annotations?.['description'], rule.alert).toBeTruthy();
    }
  });

  // promtool passes a test of a misspelt alert name (it expects no alert and gets none), and a
  // test that only ever expects silence proves nothing: both are checked here.
  it('has unit tests that make every alert fire and hold it back, and only name real alerts', () => {
    const alerts = readYaml<RuleFile>(ALERTS).groups.flatMap((g) => g.rules.map((r) => r.alert));
    const cases = readYaml<RuleTestFile>(ALERT_TESTS).tests.flatMap((t) => t.alert_rule_test ?? []);
    expect(cases.map((c) => c.alertname).filter((name) => !alerts.includes(name))).toEqual([]);
    const fires = new Set(cases.filter((c) => (c.exp_alerts ?? []).length > 0).map((c) => c.alertname));
    const silent = new Set(cases.filter((c) => (c.exp_alerts ?? []).length === 0).map((c) => c.alertname));
    expect(
      alerts.filter((a) => !fires.has(a)),
      'alerts never expected to fire',
    ).toEqual([]);
    expect(
      alerts.filter((a) => !silent.has(a)),
      'alerts never expected to stay silent',
    ).toEqual([]);
  });
});

describe('deploy/grafana/gatehouse-dashboard.json', () => {
  it('holds only valid PromQL once the template variables are filled in (promtool check rules)', async () => {
    const queries = dashboardQueries(dashboard);
    expect(queries.length).toBeGreaterThan(30);
    const run = await checkRecordingRules(asRecordingRules(queries, variableValues(dashboard)));
    expect(run.code, run.output).toBe(0);
  });

  it('reports an invalid query with the panel it comes from', async () => {
    const rules = [{ record: 'dashboard:q0', expr: 'sum(rate(x[5m])', where: 'panel 99 "Broken"' }];
    const run = await checkRecordingRules(rules);
    expect(run.code).not.toBe(0);
    expect(run.output).toContain('dashboard:q0 = panel 99 "Broken"');
  });

  it('refuses a query that uses a variable the dashboard does not define', () => {
    expect(() => substituteVariables('up{job=~"$jobs"}', variableValues(dashboard))).toThrow(/\$jobs/);
    expect(
      substituteVariables('rate(x{a=~"${route}"}[$__rate_interval])', { route: '.*', __rate_interval: '1m' }),
    ).toBe('rate(x{a=~".*"}[1m])');
  });

  it('has the datasource, route and service variables, and every query uses the datasource variable', () => {
    const names = templateVariables(dashboard).map((v) => v['name']);
    expect(names).toEqual(expect.arrayContaining(['datasource', 'route', 'service']));
    const panels = allPanels(dashboard).filter((p) => p['type'] !== 'row');
    const ids = allPanels(dashboard).map((p) => p['id']);
    expect(new Set(ids).size).toBe(ids.length);
    for (const panel of panels) {
      const targets = (panel['targets'] ?? []) as Array<{ datasource?: { uid?: string } }>;
      expect(targets.length, String(panel['title'])).toBeGreaterThan(0);
      const uids = [
        (panel['datasource'] as { uid?: string } | undefined)?.uid,
        ...targets.map((t) => t.datasource?.uid),
      ];
      expect(new Set(uids), String(panel['title'])).toEqual(new Set(['${datasource}']));
    }
  });

  it('shows every metric family the gateway exports', () => {
    const exprs = dashboardQueries(dashboard).map((q) => q.expr);
    const families = [
      'http_server_request_duration_seconds',
      'gatehouse_requests_total',
      'gatehouse_upstream_request_duration_seconds',
      'gatehouse_upstream_errors_total',
      'gatehouse_upstream_retries_total',
      'gatehouse_ratelimit_decisions_total',
      'gatehouse_ratelimit_store_degraded',
      'gatehouse_circuit_breaker_state',
      'gatehouse_target_healthy',
      'gatehouse_auth_failures_total',
      'gatehouse_access_log_dropped_total',
      'gatehouse_access_log_shipped_total',
      'gatehouse_access_log_enqueued_total',
      'gatehouse_access_log_buffered',
      'gatehouse_store_errors_total',
      'gatehouse_config_reloads_total',
      'gatehouse_handler_failures_total',
      'gatehouse_unparsed_requests_total',
      'gatehouse_build_info',
      'nodejs_eventloop_lag_p99_seconds',
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_heap_size_used_bytes',
      'up',
    ];
    // a histogram is queried through its _bucket and _count series
    const shown = (name: string) =>
      exprs.some((e) => new RegExp(`\\b${name}(_bucket|_count|_sum)?\\s*[{[(]`).test(e));
    expect(families.filter((f) => !shown(f))).toEqual([]);
  });
});
