/**
 * Counters and histograms for the request path. prom-client's label children validate and hash
 * their labels again on every `inc()` and `observe()`, which measurably costs throughput when a
 * request touches several of them. Here a child is a plain object bound once: `inc()` adds to a
 * number, `observe()` finds a bucket and adds. The registry reads them at scrape time through
 * prom-client's metric interface (`get()`), so the exposition, its format and `promtool` checks
 * are prom-client's own.
 */
import type { Registry } from 'prom-client';

type Labels = Record<string, string>;
type Sample = { labels: Labels; value: number; metricName?: string };

export class CounterChild {
  value = 0;
  constructor(readonly labels: Labels) {}
  inc(by = 1): void {
    this.value += by;
  }
}

export class HistogramChild {
  /** observations per bucket (not cumulative); the last slot is +Inf */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  constructor(
    readonly labels: Labels,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }
  observe(value: number): void {
    const bounds = this.bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += value;
    this.count++;
  }
}

abstract class FastMetric<Child extends { labels: Labels }> {
  readonly aggregator = 'sum';
  protected readonly children = new Map<string, Child>();

  constructor(
    readonly name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    registry: Registry,
  ) {
    registry.registerMetric(this as never);
  }

  /** The child for these label values (in `labelNames` order), created once. */
  labels(...values: string[]): Child {
    const key = values.join('\u0000');
    let child = this.children.get(key);
    if (child === undefined) {
      if (values.length !== this.labelNames.length)
        throw new Error(`${this.name}: expected ${this.labelNames.length} label values`);
      const labels: Labels = {};
      this.labelNames.forEach((n, i) => (labels[n] = values[i] as string));
      child = this.create(labels);
      this.children.set(key, child);
    }
    return child;
  }

  reset(): void {
    this.children.clear();
  }

  /** What prom-client's registry reads at scrape time. */
  get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Sample[] }> {
    const values: Sample[] = [];
    for (const child of this.children.values()) this.samples(child, values);
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values,
    });
  }

  abstract readonly type: string;
  protected abstract create(labels: Labels): Child;
  protected abstract samples(child: Child, into: Sample[]): void;
}

export class FastCounter extends FastMetric<CounterChild> {
  readonly type = 'counter';
  protected create(labels: Labels): CounterChild {
    return new CounterChild(labels);
  }
  protected samples(c: CounterChild, into: Sample[]): void {
    into.push({ labels: c.labels, value: c.value });
  }
}

export class FastHistogram extends FastMetric<HistogramChild> {
  readonly type = 'histogram';
  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    private readonly bounds: readonly number[],
    registry: Registry,
  ) {
    super(name, help, labelNames, registry);
  }
  protected create(labels: Labels): HistogramChild {
    return new HistogramChild(labels, this.bounds);
  }
  protected samples(c: HistogramChild, into: Sample[]): void {
    const bucket = `${this.name}_bucket`;
    let cumulative = 0;
    this.bounds.forEach((le, i) => {
      cumulative += c.counts[i] as number;
      into.push({ metricName: bucket, labels: { le: String(le), ...c.labels }, value: cumulative });
    });
    into.push({ metricName: bucket, labels: { le: '+Inf', ...c.labels }, value: c.count });
    into.push({ metricName: `${this.name}_sum`, labels: c.labels, value: c.sum });
    into.push({ metricName: `${this.name}_count`, labels: c.labels, value: c.count });
  }
}
