/**
 * The Elasticsearch sink: a batch is one `POST <url>/_bulk` (NDJSON, a `create` action per
 * record, which indices and data streams both accept) over a one-connection undici Pool. The
 * answer is read per item: 2xx shipped, 429 and 5xx retried, other 4xx rejected (the document
 * can never be indexed as it is). A failed request (refused, timed out, 429, 5xx) ships nothing
 * and is retried whole by the shipper.
 */
import { Pool } from 'undici';
import type { ElasticsearchSinkConfig } from '../../config/schema.js';
import type { Logger } from '../logger.js';
import type { AccessRecord } from './record.js';
import { errorText, serialise, type ItemOutcome, type SendResult, type Sink } from './shipper.js';

/** Only what is read back: the answer to a 500-record batch stays small. */
const FILTER_PATH = 'filter_path=errors,items.*.status,items.*.error.type,items.*.error.reason';
const REJECTION_LOG_EVERY_MS = 60_000;

/** The document: the record with `@timestamp` first (a data stream requires it). */
export function bulkDocument(record: AccessRecord): string {
  return `{"@timestamp":${JSON.stringify(record.time)},${JSON.stringify(record).slice(1)}`;
}

export function actionLine(index: string): string {
  return `${JSON.stringify({ create: { _index: index } })}\n`;
}

export type BulkReading = {
  result: SendResult;
  rejected: number;
  /** "type: reason" of the first rejected item, for the log */
  firstRejection: string | null;
};

/** Reads a `_bulk` answer for a batch of `count` documents. Pure, so every case is unit-tested. */
export function readBulkResponse(status: number, body: string, count: number): BulkReading {
  if (status === 429 || status === 408 || status >= 500)
    return failure(`HTTP ${status}${reasonOf(body)}`, false);
  // any other refusal (401, 403, 404, 413, 400) is about this request: charge the records, so a
  // batch Elasticsearch will never take ends as retries_exhausted instead of blocking the queue
  if (status < 200 || status >= 300) return failure(`HTTP ${status}${reasonOf(body)}`, true);
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return failure('unreadable _bulk answer', false);
  }
  if (!isObject(parsed)) return failure('unreadable _bulk answer', false);
  if (parsed.errors === false) return { result: { ok: true }, rejected: 0, firstRejection: null };
  const answered = Array.isArray(parsed.items) ? (parsed.items as unknown[]) : [];
  const items: ItemOutcome[] = [];
  let rejected = 0;
  let firstRejection: string | null = null;
  for (let i = 0; i < count; i++) {
    const item = itemOf(answered[i]);
    const s = item?.status;
    if (typeof s !== 'number' || s === 429 || s >= 500) items.push('retry');
    else if (s >= 200 && s < 300) items.push('shipped');
    else {
      items.push('rejected');
      rejected++;
      firstRejection ??= rejectionText(item?.error, s);
    }
  }
  return { result: { ok: true, items }, rejected, firstRejection };
}

function failure(error: string, charge: boolean): BulkReading {
  return { result: { ok: false, error, charge }, rejected: 0, firstRejection: null };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `{"create":{...}}` (or whatever the action was) → its body. */
function itemOf(v: unknown): Record<string, unknown> | undefined {
  if (!isObject(v)) return undefined;
  for (const key in v) {
    const inner = v[key];
    return isObject(inner) ? inner : undefined;
  }
  return undefined;
}

function rejectionText(error: unknown, status: number): string {
  if (!isObject(error)) return `status ${status}`;
  const type = typeof error.type === 'string' ? error.type : `status ${status}`;
  // Elasticsearch quotes a preview of the offending value: keep the log line short
  const reason = typeof error.reason === 'string' ? `: ${error.reason.slice(0, 200)}` : '';
  return type + reason;
}

function reasonOf(body: string): string {
  try {
    const parsed: unknown = JSON.parse(body);
    if (isObject(parsed) && isObject(parsed.error) && typeof parsed.error.type === 'string')
      return ` (${parsed.error.type})`;
  } catch {
    // not JSON: a proxy's error page, say nothing more
  }
  return '';
}

export class ElasticsearchSink implements Sink<AccessRecord> {
  readonly name = 'elasticsearch';
  private readonly pool: Pool;
  private readonly path: string;
  private readonly headers: Record<string, string>;
  private readonly action: string;
  private readonly line: (record: AccessRecord) => string;
  private readonly timeout: number;
  private rejectedSinceLog = 0;
  private lastRejectionLog = -Infinity;

  constructor(
    config: ElasticsearchSinkConfig,
    private readonly logger: Logger,
    /** monotonic by default: only durations (log every minute at most) */
    private readonly now: () => number = () => performance.now(),
  ) {
    const url = new URL(config.url);
    this.path = `${url.pathname.replace(/\/+$/, '')}/_bulk?${FILTER_PATH}`;
    this.headers = { 'content-type': 'application/x-ndjson', accept: 'application/json' };
    if (config.apiKey !== undefined) this.headers.authorization = `ApiKey ${config.apiKey}`;
    else if (url.username !== '') {
      const user = `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`;
      this.headers.authorization = `Basic ${Buffer.from(user).toString('base64')}`;
    }
    this.timeout = config.timeout;
    this.action = actionLine(config.index);
    this.line = (record) => `${this.action}${bulkDocument(record)}\n`;
    // one connection: the shipper never has more than one request in flight
    this.pool = new Pool(url.origin, {
      connections: 1,
      pipelining: 1,
      connect: { timeout: config.timeout },
      headersTimeout: config.timeout,
      bodyTimeout: config.timeout,
    });
  }

  async send(batch: readonly AccessRecord[], signal: AbortSignal): Promise<SendResult> {
    const { text, items: local } = serialise(batch, this.line);
    // records that could not be serialised are not sent: the answer covers the others, in order
    const sent = local === undefined ? batch.length : local.filter((o) => o === 'shipped').length;
    if (sent === 0) return { ok: true, ...(local === undefined ? {} : { items: local }) };
    // `timeout` bounds the whole exchange, upload and answer included, to the millisecond (the
    // pool's own timeouts, kept as a backstop, run on a coarse timer)
    const abort = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      abort.abort();
    }, this.timeout);
    timer.unref();
    const cancel = (): void => abort.abort();
    if (signal.aborted) cancel();
    else signal.addEventListener('abort', cancel, { once: true });
    let status: number;
    let body: string;
    try {
      const res = await this.pool.request({
        method: 'POST',
        path: this.path,
        headers: this.headers,
        body: text,
        signal: abort.signal,
      });
      status = res.statusCode;
      body = await res.body.text();
    } catch (err) {
      const error = timedOut ? `no answer within ${this.timeout} ms` : errorText(err);
      return { ok: false, error, charge: false };
    } finally {
      clearTimeout(timer);
      signal.removeEventListener('abort', cancel);
    }
    const reading = readBulkResponse(status, body, sent);
    if (reading.rejected > 0) this.noteRejections(reading.rejected, reading.firstRejection);
    return local === undefined ? reading.result : merge(local, reading.result);
  }

  close(): Promise<void> {
    // nothing is in flight any more (the shipper aborted or finished it)
    return this.pool.destroy();
  }

  /** The first rejection is logged at once, then at most one line a minute with the count. */
  private noteRejections(count: number, first: string | null): void {
    this.rejectedSinceLog += count;
    const t = this.now();
    if (t - this.lastRejectionLog < REJECTION_LOG_EVERY_MS) return;
    this.logger.warn(
      { sink: this.name, rejected: this.rejectedSinceLog, reason: first },
      'Elasticsearch rejected access-log records; dropped',
    );
    this.lastRejectionLog = t;
    this.rejectedSinceLog = 0;
  }
}

/** Lays the answer for the records sent over the outcomes of the whole batch. */
function merge(local: readonly ItemOutcome[], answer: SendResult): SendResult {
  // a failed request is retried whole: the unserialisable records are rejected again then
  if (!answer.ok) return answer;
  const items = [...local];
  let k = 0;
  for (let i = 0; i < items.length; i++) {
    if (items[i] !== 'shipped') continue;
    items[i] = answer.items?.[k] ?? 'shipped';
    k++;
  }
  return { ok: true, items };
}
