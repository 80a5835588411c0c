/**
 * Prometheus view of the access-log accounting. The shippers keep plain counters (pushing a
 * record touches no metric); a scrape reads them all at one moment, so the exported numbers obey
 * enqueued = shipped + dropped + buffered exactly, per sink. Several access logs may feed one
 * registry (a reload replaces the pipeline): counters grow by each one's increase, and a detached
 * log's last numbers stay counted.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { DROP_REASONS, type SinkName, type SinkStats } from './shipper.js';

export type StatsSource = () => Partial<Record<SinkName, SinkStats>>;

type Seen = { enqueued: number; shipped: number; dropped: Record<string, number> };

const perRegistry = new WeakMap<Registry, AccessLogMetrics>();

export class AccessLogMetrics {
  private readonly enqueued: Counter<'sink'>;
  private readonly shipped: Counter<'sink'>;
  private readonly dropped: Counter<'sink' | 'reason'>;
  private readonly buffered: Gauge<'sink'>;
  private readonly sources = new Map<StatsSource, Map<SinkName, Seen>>();
  private readonly sinks = new Set<SinkName>();

  /** The one instance for `registry` (metric names can be registered only once per registry). */
  static on(registry: Registry): AccessLogMetrics {
    let metrics = perRegistry.get(registry);
    if (metrics === undefined) {
      metrics = new AccessLogMetrics(registry);
      perRegistry.set(registry, metrics);
    }
    return metrics;
  }

  private constructor(registry: Registry) {
    const registers = [registry];
    const collect = (): void => this.sync();
    this.enqueued = new Counter({
      name: 'gatehouse_access_log_enqueued_total',
      help: 'Access-log records handed to a sink (= shipped + dropped + buffered)',
      labelNames: ['sink'],
      registers,
      collect,
    });
    this.shipped = new Counter({
      name: 'gatehouse_access_log_shipped_total',
      help: 'Access-log records a sink accepted',
      labelNames: ['sink'],
      registers,
      collect,
    });
    this.dropped = new Counter({
      name: 'gatehouse_access_log_dropped_total',
      help: 'Access-log records given up (buffer_full, rejected, retries_exhausted, shutdown, closed)',
      labelNames: ['sink', 'reason'],
      registers,
      collect,
    });
    this.buffered = new Gauge({
      name: 'gatehouse_access_log_buffered',
      help: 'Access-log records waiting for a sink or in flight to it',
      labelNames: ['sink'],
      registers,
      collect,
    });
  }

  /** Starts exporting `source`; the returned function takes its final numbers and stops. */
  attach(source: StatsSource): () => void {
    this.sources.set(source, new Map());
    this.sync();
    return () => {
      if (!this.sources.has(source)) return;
      this.sync();
      this.sources.delete(source);
      this.sync();
    };
  }

  /** Brings every metric up to the sources' current numbers (idempotent). */
  sync(): void {
    const buffered = new Map<SinkName, number>();
    for (const [source, seenBySink] of this.sources) {
      const all = source();
      for (const sink of Object.keys(all) as SinkName[]) {
        const stats = all[sink];
        if (stats === undefined) continue;
        this.sinks.add(sink);
        let seen = seenBySink.get(sink);
        if (seen === undefined) {
          seen = { enqueued: 0, shipped: 0, dropped: {} };
          seenBySink.set(sink, seen);
          // every series exists from the start, so rate() and alerts see 0 rather than nothing
          this.enqueued.inc({ sink }, 0);
          this.shipped.inc({ sink }, 0);
          for (const reason of DROP_REASONS) this.dropped.inc({ sink, reason }, 0);
        }
        this.enqueued.inc({ sink }, stats.enqueued - seen.enqueued);
        this.shipped.inc({ sink }, stats.shipped - seen.shipped);
        seen.enqueued = stats.enqueued;
        seen.shipped = stats.shipped;
        for (const reason of DROP_REASONS) {
          const now = stats.droppedBy[reason];
          this.dropped.inc({ sink, reason }, now - (seen.dropped[reason] ?? 0));
          seen.dropped[reason] = now;
        }
        buffered.set(sink, (buffered.get(sink) ?? 0) + stats.buffered);
      }
    }
    for (const sink of this.sinks) this.buffered.set({ sink }, buffered.get(sink) ?? 0);
  }
}
