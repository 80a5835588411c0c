/**
 * Tracing for the data plane: every request continues the caller's W3C trace or starts one
 * (`begin`), the gateway's own span id is forwarded upstream in `traceparent`, and when
 * `tracing.otlpUrl` is set the sampled requests' SERVER spans are exported over OTLP/HTTP
 * (`end`). Unsampled requests, and every request when export is off, never reach the SDK.
 * See docs/tracing.md.
 */
import { performance } from 'node:perf_hooks';
import type { Attributes } from '@opentelemetry/api';
import type { TracingConfig } from '../../config/schema.js';
import type { Logger } from '../logger.js';
import { OtlpSpanExport, type ExportStats } from './exporter.js';
import {
  SAMPLED_FLAG,
  formatTraceparent,
  forwardableTracestate,
  newSpanId,
  newTraceId,
  parseTraceparent,
} from './trace-context.js';

export {
  MAX_TRACESTATE_LENGTH,
  SAMPLED_FLAG,
  formatTraceparent,
  forwardableTracestate,
  newSpanId,
  newTraceId,
  parseTraceparent,
  type Traceparent,
} from './trace-context.js';
export { traceEndpoint, type ExportStats } from './exporter.js';

export type TraceContext = {
  readonly traceId: string;
  /** the gateway's span for this request */
  readonly spanId: string;
  /** the caller's span, or null when the trace starts here */
  readonly parentSpanId: string | null;
  readonly sampled: boolean;
  /** the value to send upstream: this trace, the gateway's span as parent */
  readonly traceparent: string;
  /** the caller's tracestate to send upstream, or null to send none */
  readonly tracestate: string | null;
  /** epoch milliseconds, fractional */
  readonly startTime: number;
};

export type SpanOutcome = {
  /** the matched route's pattern, null when no route matched */
  route: string | null;
  method: string;
  /** the status sent to the client; 0 when none was */
  status: number;
  service: string | null;
  /** the upstream origin the request went to */
  target: string | null;
  /** a short, low-cardinality failure class (`upstream_timeout`, ...), null when none */
  error: string | null;
  /** `url.scheme`; `http` when not given */
  scheme?: string;
  /** `server.address`: the host the client addressed, when known */
  serverAddress?: string;
};

export type TracingOptions = {
  /** the draw for sampling new traces, in [0, 1) (tests inject one) */
  random?: () => number;
  maxQueueSize?: number;
  maxExportBatchSize?: number;
  scheduledDelayMs?: number;
  exportTimeoutMs?: number;
};

const KNOWN_METHODS = new Set([
  'GET',
  'HEAD',
  'POST',
  'PUT',
  'DELETE',
  'CONNECT',
  'OPTIONS',
  'TRACE',
  'PATCH',
]);

/**
 * The span's name, attributes and error flag (OpenTelemetry HTTP server conventions). An
 * unknown method is reported as `_OTHER` (and named `HTTP`) so a client cannot mint span names.
 * A 5xx without a named error is an error of type `<status>`; a 4xx is the client's, not ours.
 */
export function serverSpan(outcome: SpanOutcome): { name: string; attributes: Attributes; error: boolean } {
  const known = KNOWN_METHODS.has(outcome.method);
  const attributes: Attributes = {
    'http.request.method': known ? outcome.method : '_OTHER',
    'url.scheme': outcome.scheme ?? 'http',
  };
  if (!known) attributes['http.request.method_original'] = outcome.method;
  if (outcome.route !== null) attributes['http.route'] = outcome.route;
  if (outcome.status > 0) attributes['http.response.status_code'] = outcome.status;
  if (outcome.serverAddress !== undefined) attributes['server.address'] = outcome.serverAddress;
  if (outcome.service !== null) attributes['gatehouse.service'] = outcome.service;
  if (outcome.target !== null) attributes['gatehouse.target'] = outcome.target;
  const errorType = outcome.error ?? (outcome.status >= 500 ? String(outcome.status) : null);
  if (errorType !== null) attributes['error.type'] = errorType;
  return {
    name: `${known ? outcome.method : 'HTTP'} ${outcome.route ?? 'unmatched'}`,
    attributes,
    error: errorType !== null,
  };
}

// Read once: the getter is not free, and the origin does not change.
const TIME_ORIGIN = performance.timeOrigin;
const now = (): number => TIME_ORIGIN + performance.now();

const NO_EXPORT: ExportStats = { queued: 0, exported: 0, dropped: 0, failed: 0 };

export class Tracing {
  private readonly sink: OtlpSpanExport | null;
  private readonly sampleRate: number;
  private readonly random: () => number;
  private endFailures = 0;

  constructor(
    config: TracingConfig | undefined,
    private readonly logger: Logger,
    options: TracingOptions = {},
  ) {
    this.random = options.random ?? Math.random;
    this.sampleRate = config?.sampleRate ?? 0;
    this.sink =
      config?.otlpUrl === undefined
        ? null
        : new OtlpSpanExport(
            {
              otlpUrl: config.otlpUrl,
              serviceName: config.serviceName,
              maxQueueSize: options.maxQueueSize ?? 2048,
              maxExportBatchSize: options.maxExportBatchSize ?? 512,
              scheduledDelayMs: options.scheduledDelayMs ?? 2000,
              exportTimeoutMs: options.exportTimeoutMs ?? 10_000,
            },
            logger,
          );
  }

  /** Whether sampled spans are exported at all. */
  get exporting(): boolean {
    return this.sink !== null;
  }

  /**
   * Continues the caller's trace (same trace id and sampled flag, a new span id for the
   * gateway, the caller's span as parent) or, without a valid `traceparent`, starts one:
   * sampled at `sampleRate` when spans are exported, otherwise not sampled.
   */
  begin(traceparent: string | undefined, tracestate: string | undefined): TraceContext {
    const startTime = now();
    const spanId = newSpanId();
    const caller = parseTraceparent(traceparent);
    if (caller !== null) {
      const sampled = (caller.flags & SAMPLED_FLAG) !== 0;
      return {
        traceId: caller.traceId,
        spanId,
        parentSpanId: caller.parentId,
        sampled,
        traceparent: formatTraceparent(caller.traceId, spanId, sampled),
        tracestate: forwardableTracestate(tracestate, true),
        startTime,
      };
    }
    const traceId = newTraceId();
    // random() < 0 never holds and random() < 1 always does: rates 0 and 1 are exact.
    const sampled = this.sink !== null && this.random() < this.sampleRate;
    return {
      traceId,
      spanId,
      parentSpanId: null,
      sampled,
      traceparent: formatTraceparent(traceId, spanId, sampled),
      tracestate: null,
      startTime,
    };
  }

  /** Records the request's SERVER span when it is sampled and exported. Never throws, never waits. */
  end(tc: TraceContext, outcome: SpanOutcome): void {
    if (!tc.sampled || this.sink === null) return;
    try {
      const { name, attributes, error } = serverSpan(outcome);
      this.sink.record({
        traceId: tc.traceId,
        spanId: tc.spanId,
        parentSpanId: tc.parentSpanId,
        tracestate: tc.tracestate,
        name,
        startTime: tc.startTime,
        endTime: now(),
        attributes,
        error,
      });
    } catch (err) {
      // A tracing fault must not fail the request; log the first, count the rest.
      if (this.endFailures++ === 0) this.logger.warn({ err }, 'tracing: could not record a span');
    }
  }

  stats(): ExportStats {
    return this.sink?.stats() ?? { ...NO_EXPORT };
  }

  /** Flushes pending spans; resolves after at most `timeoutMs`. */
  shutdown(timeoutMs: number): Promise<void> {
    return this.sink?.shutdown(timeoutMs) ?? Promise.resolve();
  }
}
