/**
 * The access log: `push` one record per request, synchronously, and it reaches every configured
 * sink (stdout JSON lines, Elasticsearch `_bulk`) in batches, each sink with its own bounded
 * buffer so a slow or absent one never holds back the other. `close` flushes on shutdown.
 * Semantics and the Elasticsearch template: docs/access-logs.md.
 */
import type { Registry } from 'prom-client';
import type { AccessLogConfig } from '../../config/schema.js';
import type { Logger } from '../logger.js';
import { ElasticsearchSink } from './elasticsearch-sink.js';
import { AccessLogMetrics } from './metrics.js';
import type { AccessRecord } from './record.js';
import {
  SinkShipper,
  type Scheduler,
  type ShipperOptions,
  type SinkName,
  type SinkStats,
} from './shipper.js';
import { StdoutSink, type LineDestination } from './stdout-sink.js';

export type { AccessRecord, RateLimitResult } from './record.js';
export { ACCESS_RECORD_MAPPINGS, indexTemplate, isoTime } from './record.js';
export type { DropReason, SinkName, SinkStats } from './shipper.js';
export type { LineDestination } from './stdout-sink.js';

/** stdout has no settings of its own: batches of up to 500, written at least every 200 ms. */
export const STDOUT_SHIPPING: ShipperOptions = {
  batchSize: 500,
  flushInterval: 200,
  maxBuffer: 10_000,
  maxBackoff: 5_000,
};

export type AccessLogOptions = {
  logger: Logger;
  /** where the gatehouse_access_log_* metrics are registered */
  registry?: Registry;
  /** replaces fd 1 (tests) */
  stdoutDestination?: LineDestination;
  /** replaces STDOUT_SHIPPING's values */
  stdoutShipping?: Partial<ShipperOptions>;
  scheduler?: Scheduler;
  random?: () => number;
};

export class AccessLog {
  private readonly stdout: SinkShipper<AccessRecord> | null;
  private readonly elasticsearch: SinkShipper<AccessRecord> | null;
  private readonly detach: () => void;
  private closing: Promise<void> | null = null;

  constructor(config: AccessLogConfig, options: AccessLogOptions) {
    const deps = {
      ...(options.scheduler === undefined ? {} : { scheduler: options.scheduler }),
      ...(options.random === undefined ? {} : { random: options.random }),
    };
    this.stdout = config.stdout
      ? new SinkShipper(
          new StdoutSink(options.logger, options.stdoutDestination),
          { ...STDOUT_SHIPPING, ...options.stdoutShipping },
          options.logger,
          deps,
        )
      : null;
    const es = config.elasticsearch;
    this.elasticsearch =
      es === undefined
        ? null
        : new SinkShipper(new ElasticsearchSink(es, options.logger), es, options.logger, deps);
    this.detach =
      options.registry === undefined
        ? () => undefined
        : AccessLogMetrics.on(options.registry).attach(() => this.stats());
  }

  /** True when at least one sink is configured (otherwise `push` does nothing). */
  get enabled(): boolean {
    return this.stdout !== null || this.elasticsearch !== null;
  }

  /** Queues the record for every sink. Synchronous, O(1), never throws, never waits. */
  push(record: AccessRecord): void {
    this.stdout?.push(record);
    this.elasticsearch?.push(record);
  }

  /** Per configured sink: enqueued = shipped + dropped + buffered. */
  stats(): Partial<Record<SinkName, SinkStats>> {
    const out: Partial<Record<SinkName, SinkStats>> = {};
    if (this.stdout !== null) out.stdout = this.stdout.stats();
    if (this.elasticsearch !== null) out.elasticsearch = this.elasticsearch.stats();
    return out;
  }

  /**
   * Flushes every sink for at most `timeoutMs` (in parallel), drops what is left as `shutdown`,
   * and closes the sinks. Records pushed afterwards are dropped as `closed`.
   */
  close(timeoutMs: number): Promise<void> {
    this.closing ??= Promise.all([this.stdout?.close(timeoutMs), this.elasticsearch?.close(timeoutMs)]).then(
      () => this.detach(),
    );
    return this.closing;
  }
}
