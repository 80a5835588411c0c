/**
 * OTLP/HTTP (JSON) export of the gateway's finished SERVER spans through the OpenTelemetry SDK:
 * a BasicTracerProvider with a BatchSpanProcessor (bounded queue) and the OTLP HTTP exporter.
 *
 * The ids were drawn, and forwarded upstream, before the SDK ever sees the request: the span
 * is created only once the request is over, with a hand-over IdGenerator that returns those
 * same ids, so the exported span is exactly the parent the upstream was told about.
 *
 * Nothing here throws to or waits for the caller: a full queue drops the span (counted, logged
 * once per episode), and serialisation and the HTTP call run outside the request that filled a
 * batch. The SDK is loaded on first use: it costs ~200 ms of start-up that a gateway without
 * export, or a CLI command, should not pay.
 */
import { createRequire } from 'node:module';
import type * as OtelApi from '@opentelemetry/api';
import type { Attributes } from '@opentelemetry/api';
import type * as OtlpHttp from '@opentelemetry/exporter-trace-otlp-http';
import type * as Resources from '@opentelemetry/resources';
import type * as SdkTraceBase from '@opentelemetry/sdk-trace-base';
import type {
  BasicTracerProvider,
  IdGenerator,
  ReadableSpan,
  SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import type { Logger } from '../logger.js';

export type ExportOptions = {
  /** collector base URL; spans go to `<otlpUrl>/v1/traces` */
  otlpUrl: string;
  serviceName: string;
  /** spans waiting for export; past it new spans are dropped */
  maxQueueSize: number;
  maxExportBatchSize: number;
  /** how long a span may wait for a batch to fill */
  scheduledDelayMs: number;
  /** one export, retries included */
  exportTimeoutMs: number;
};

/** A request's span, complete, ready to hand to the SDK. */
export type FinishedSpan = {
  traceId: string;
  spanId: string;
  parentSpanId: string | null;
  tracestate: string | null;
  name: string;
  /** epoch milliseconds, fractional */
  startTime: number;
  endTime: number;
  attributes: Attributes;
  error: boolean;
};

export type ExportStats = {
  /** spans waiting in the batch queue */
  queued: number;
  /** spans the collector accepted */
  exported: number;
  /** spans dropped because the queue was full (or recorded after shutdown began) */
  dropped: number;
  /** spans in batches the collector refused or never answered for */
  failed: number;
};

type ExportResult = Parameters<Parameters<SpanExporter['export']>[1]>[0];

// ExportResultCode in @opentelemetry/core (not a direct dependency): SUCCESS = 0, FAILED = 1.
const EXPORT_SUCCESS = 0;
const EXPORT_FAILED = 1;

/** `<otlpUrl>/v1/traces`, with no doubled slash when the URL ends in one. */
export function traceEndpoint(otlpUrl: string): string {
  let end = otlpUrl.length;
  while (end > 0 && otlpUrl.charCodeAt(end - 1) === 0x2f) end--;
  return `${otlpUrl.slice(0, end)}/v1/traces`;
}

/** Hands the SDK the ids set just before `startSpan` (synchronous, so no other span interleaves). */
class HandOverIds implements IdGenerator {
  traceId = '';
  spanId = '';
  generateTraceId(): string {
    return this.traceId;
  }
  generateSpanId(): string {
    return this.spanId;
  }
}

type Sdk = {
  api: typeof OtelApi;
  base: typeof SdkTraceBase;
  otlp: typeof OtlpHttp;
  resources: typeof Resources;
};

function loadSdk(): Sdk {
  const require = createRequire(import.meta.url);
  return {
    api: require('@opentelemetry/api') as typeof OtelApi,
    base: require('@opentelemetry/sdk-trace-base') as typeof SdkTraceBase,
    otlp: require('@opentelemetry/exporter-trace-otlp-http') as typeof OtlpHttp,
    resources: require('@opentelemetry/resources') as typeof Resources,
  };
}

export class OtlpSpanExport {
  private readonly sdk: Sdk;
  private readonly ids = new HandOverIds();
  private readonly provider: BasicTracerProvider;
  private readonly exporter: CountingExporter;
  private readonly tracer: OtelApi.Tracer;
  private readonly maxQueueSize: number;
  private readonly counts: ExportStats = { queued: 0, exported: 0, dropped: 0, failed: 0 };
  /** drops since the queue last had room: logged when the episode starts and ends */
  private droppingSince = -1;
  private exportFailing = false;
  private closing: Promise<void> | null = null;

  constructor(
    options: ExportOptions,
    private readonly logger: Logger,
  ) {
    this.sdk = loadSdk();
    const { base, otlp, resources } = this.sdk;
    this.maxQueueSize = options.maxQueueSize;
    this.exporter = new CountingExporter(
      new otlp.OTLPTraceExporter({
        url: traceEndpoint(options.otlpUrl),
        timeoutMillis: options.exportTimeoutMs,
      }),
      this,
    );
    this.provider = new base.BasicTracerProvider({
      resource: resources
        .defaultResource()
        .merge(resources.resourceFromAttributes({ 'service.name': options.serviceName })),
      // the sampling decision was made in Tracing.begin; only sampled spans come here
      sampler: new base.AlwaysOnSampler(),
      idGenerator: this.ids,
      spanProcessors: [
        new base.BatchSpanProcessor(this.exporter, {
          maxQueueSize: options.maxQueueSize,
          maxExportBatchSize: Math.min(options.maxExportBatchSize, options.maxQueueSize),
          scheduledDelayMillis: options.scheduledDelayMs,
          exportTimeoutMillis: options.exportTimeoutMs,
        }),
      ],
    });
    this.tracer = this.provider.getTracer('gatehouse');
  }

  record(span: FinishedSpan): void {
    if (this.closing !== null) {
      this.counts.dropped++;
      return;
    }
    // Our own gate mirrors the processor's queue (it is told of every span leaving it), so a
    // drop is counted here instead of vanishing inside the SDK.
    if (this.counts.queued >= this.maxQueueSize) {
      if (this.droppingSince < 0) {
        this.droppingSince = this.counts.dropped;
        this.logger.warn({ maxQueueSize: this.maxQueueSize }, 'tracing: span queue full, dropping spans');
      }
      this.counts.dropped++;
      return;
    }
    if (this.droppingSince >= 0) {
      this.logger.warn(
        { dropped: this.counts.dropped - this.droppingSince },
        'tracing: span queue has room again',
      );
      this.droppingSince = -1;
    }
    const { api } = this.sdk;
    let parent = api.ROOT_CONTEXT;
    if (span.parentSpanId !== null) {
      parent = api.trace.setSpanContext(parent, {
        traceId: span.traceId,
        spanId: span.parentSpanId,
        traceFlags: api.TraceFlags.SAMPLED,
        isRemote: true,
        ...(span.tracestate === null ? {} : { traceState: api.createTraceState(span.tracestate) }),
      });
    }
    this.ids.traceId = span.traceId;
    this.ids.spanId = span.spanId;
    const sdkSpan = this.tracer.startSpan(
      span.name,
      { kind: api.SpanKind.SERVER, startTime: span.startTime, attributes: span.attributes },
      parent,
    );
    if (span.error) sdkSpan.setStatus({ code: api.SpanStatusCode.ERROR });
    this.counts.queued++;
    sdkSpan.end(span.endTime);
  }

  stats(): ExportStats {
    return { ...this.counts };
  }

  /** Exports what is queued; resolves after at most `timeoutMs` even if the collector is down. */
  shutdown(timeoutMs: number): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.logger.warn(
          { ...this.counts, timeoutMs },
          'tracing: span export did not finish before shutdown',
        );
        resolve();
      }, timeoutMs);
      // The processor gives up on the first failed batch (its flush is a Promise.all), so the
      // batches still in flight are waited for here, and the exporter closed if it did not.
      this.provider
        .shutdown()
        .catch((err: unknown) => this.logger.debug({ err }, 'tracing: span processor shutdown failed'))
        .then(() => this.exporter.idle())
        .then(() => this.exporter.shutdown())
        .catch((err: unknown) => this.logger.debug({ err }, 'tracing: span exporter shutdown failed'))
        .finally(() => {
          clearTimeout(timer);
          resolve();
        });
    });
    return this.closing;
  }

  /** A batch left the processor's queue for the exporter. */
  taken(count: number): void {
    this.counts.queued = Math.max(0, this.counts.queued - count);
  }

  settled(count: number, result: ExportResult): void {
    if (result.code === EXPORT_SUCCESS) {
      this.counts.exported += count;
      if (this.exportFailing) {
        this.exportFailing = false;
        this.logger.info({ failed: this.counts.failed }, 'tracing: span export recovered');
      }
      return;
    }
    this.counts.failed += count;
    if (!this.exportFailing) {
      this.exportFailing = true;
      this.logger.warn({ err: result.error?.message, spans: count }, 'tracing: span export failed');
    }
  }
}

/** Counts what goes through, and runs each export on its own tick rather than in the request that filled the batch. */
class CountingExporter implements SpanExporter {
  private readonly inFlight = new Set<Promise<void>>();
  private closed: Promise<void> | null = null;

  constructor(
    private readonly inner: SpanExporter,
    private readonly owner: OtlpSpanExport,
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.owner.taken(spans.length);
    const settled = new Promise<void>((resolve) => {
      setImmediate(() => {
        const finish = (result: ExportResult): void => {
          this.owner.settled(spans.length, result);
          resolve();
          done(result);
        };
        try {
          this.inner.export(spans, finish);
        } catch (err) {
          finish({ code: EXPORT_FAILED, error: err instanceof Error ? err : new Error(String(err)) });
        }
      });
    });
    this.inFlight.add(settled);
    void settled.then(() => this.inFlight.delete(settled));
  }

  /** Resolves once every export handed over so far has been answered. */
  async idle(): Promise<void> {
    // a settled batch can make the processor hand over the next one
    while (this.inFlight.size > 0) await Promise.all(this.inFlight);
  }

  shutdown(): Promise<void> {
    this.closed ??= this.inner.shutdown();
    return this.closed;
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}
