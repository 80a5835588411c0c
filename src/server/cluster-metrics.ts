/**
 * `/metrics` with workers. Each worker has its own registry and the admin port is shared, so a
 * scrape reaching one worker would see that worker only. The worker that gets the scrape asks the
 * primary, which collects every worker's registry (as JSON, over IPC) and answers with the total
 * (prom-client's `AggregatorRegistry.aggregate`: counters and histograms summed, gauges by their
 * declared aggregator).
 *
 * Sums never drop. A worker that dies takes its counters with it, and a sum that goes down reads
 * to Prometheus as a counter reset (rate() would see a spike). So the primary keeps each worker's
 * last report (a collection, or the final one a worker sends when it stops cleanly) and, when the
 * worker is gone, folds its summed counters and histograms into `retired`, which every later
 * answer adds in. (What a crashed worker counted after its last report is lost; the sum still
 * never goes down.) The primary's own counters (reloads, worker restarts) are added too.
 */
import {
  AggregatorRegistry,
  Counter,
  Registry,
  type MetricObjectWithValues,
  type MetricValue,
} from 'prom-client';

export type MetricsReport = MetricObjectWithValues<MetricValue<string> & { metricName?: string }>[];

/** Only these are carried over from a dead worker: values that only ever grow, summed. */
const carriedOver = (m: MetricsReport[number]): boolean =>
  // prom-client's typings declare `type` a numeric enum; at run time it is the type's name
  m.aggregator === 'sum' && ['counter', 'histogram'].includes(String(m.type));

const sampleKey = (v: { metricName?: string; labels: object }): string =>
  `${v.metricName ?? ''}\u0000${JSON.stringify(Object.entries(v.labels).sort(([a], [b]) => (a < b ? -1 : 1)))}`;

/** Adds `more` into `into` (summed metrics only): sample by sample, by name and labels. */
export function addReports(into: MetricsReport, more: MetricsReport): MetricsReport {
  const byName = new Map(into.map((m) => [m.name, { ...m, values: m.values.map((v) => ({ ...v })) }]));
  for (const metric of more.filter(carriedOver)) {
    const known = byName.get(metric.name);
    if (known === undefined) {
      byName.set(metric.name, { ...metric, values: metric.values.map((v) => ({ ...v })) });
      continue;
    }
    const samples = new Map(known.values.map((v) => [sampleKey(v), v]));
    for (const v of metric.values) {
      const same = samples.get(sampleKey(v));
      if (same) same.value += v.value;
      else known.values.push({ ...v });
    }
  }
  return [...byName.values()];
}

export class PrimaryMetrics {
  readonly registry = new Registry();
  readonly configReloads: Counter<'result'>;
  readonly workerRestarts: Counter<'reason'>;
  /** what workers that are gone had counted */
  private retired: MetricsReport = [];

  constructor() {
    const registers = [this.registry];
    // the same metric the workers' registries declare (metrics.ts); with workers only the
    // primary counts it: one reload is one increment, however many workers it reached
    this.configReloads = new Counter({
      name: 'gatehouse_config_reloads_total',
      help: 'Config reloads (POST /reload, SIGHUP) by result',
      labelNames: ['result'],
      registers,
    });
    this.configReloads.inc({ result: 'success' }, 0);
    this.configReloads.inc({ result: 'failure' }, 0);
    this.workerRestarts = new Counter({
      name: 'gatehouse_worker_restarts_total',
      help: 'Workers the primary started in place of one that exited (reason: crash = killed by a signal or a non-zero exit code; exit = a clean exit)',
      labelNames: ['reason'],
      registers,
    });
    this.workerRestarts.inc({ reason: 'crash' }, 0);
    this.workerRestarts.inc({ reason: 'exit' }, 0);
  }

  /** A worker is gone: its last report's counters and histograms stay in every later total. */
  retire(last: MetricsReport): void {
    this.retired = addReports(this.retired, last);
  }

  /** The total over the live workers' reports, the retired workers and the primary. */
  async text(live: MetricsReport[]): Promise<string> {
    // taken now: a worker retired while this awaits is in `live` already
    const retired = this.retired;
    const own = (await this.registry.getMetricsAsJSON()) as MetricsReport;
    // live reports first: a gauge aggregated with `first` takes a live worker's value
    return AggregatorRegistry.aggregate([...live, retired, own]).metrics();
  }
}
