/**
 * What happens on a port outside the normal end of a request, counted and logged: a request
 * handler that threw or whose promise rejected (a bug: the request got a 500, or its connection
 * was closed), and a request node's HTTP parser refused before it became a request (smuggling
 * attempts, slowloris). Both can be caused by clients at will, so their log lines are sampled
 * (`LogSampler`); the metrics count every one.
 */
import type { Logger } from './logger.js';
import { LogSampler, type SamplerClock } from './log-sampler.js';
import type { GatewayMetrics } from './metrics.js';

export type Port = 'proxy' | 'admin';

/** Log lines per second, for each of the two kinds. */
export const SAMPLED_LINES_PER_SECOND = 10;

/** Node's error codes for a refused request: llhttp's `HPE_*`, and the two request timeouts. */
const PARSER_CODE = /^(HPE_[A-Z_]{1,40}|ERR_HTTP_REQUEST_TIMEOUT|ERR_HTTP_HEADERS_TIMEOUT)$/;

/** The reason label: a code node documents, else `other` (labels stay a small, fixed set). */
export function refusalReason(code: string | undefined): string {
  return code !== undefined && PARSER_CODE.test(code) ? code : 'other';
}

export class PortEvents {
  private readonly failureLog: LogSampler;
  private readonly refusalLog: LogSampler;

  constructor(
    private readonly metrics: GatewayMetrics | null,
    private readonly logger: Logger,
    clock?: SamplerClock,
  ) {
    this.failureLog = new LogSampler(
      SAMPLED_LINES_PER_SECOND,
      (suppressed) => this.logger.error({ suppressed }, 'request handler failures not logged'),
      clock,
    );
    this.refusalLog = new LogSampler(
      SAMPLED_LINES_PER_SECOND,
      (suppressed) => this.logger.warn({ suppressed }, 'refused requests not logged'),
      clock,
    );
  }

  /** A handler threw, or a promise of its rejected: counted, and logged with the error. */
  handlerFailed(port: Port, err: unknown, requestId: string | null): void {
    this.metrics?.handlerFailures.labels(port).inc();
    if (this.failureLog.admit()) this.logger.error({ err, port, requestId }, 'request handler failed');
  }

  /**
   * Node's parser refused a request (or it came too slowly), answered with `answer`. The fields
   * are an access-log record's: `error` is the problem code, `reason` node's error code.
   */
  refused(
    answer: { readonly status: number; readonly code: string },
    nodeCode: string | undefined,
    requestId: string,
    clientIp: string | undefined,
  ): void {
    const reason = refusalReason(nodeCode);
    this.metrics?.unparsedRequests.labels(String(answer.status), reason).inc();
    if (this.refusalLog.admit()) {
      this.logger.warn(
        { status: answer.status, error: answer.code, reason, requestId, clientIp: clientIp ?? null },
        'request refused by the HTTP parser',
      );
    }
  }
}
