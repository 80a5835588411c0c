/**
 * One sink's side of the access log: a bounded queue filled synchronously by `push`, drained in
 * batches (when `batchSize` records wait, or `flushInterval` after the first) with one send in
 * flight at a time. Every record pushed is, at any moment, exactly one of shipped, dropped (with
 * a reason) or buffered (queued or in flight): enqueued = shipped + dropped + buffered. A failed
 * send keeps its batch and backs off; per-record outcomes decide what is retried.
 */
import type { Logger } from '../logger.js';
import { RingQueue } from './queue.js';

export type SinkName = 'stdout' | 'elasticsearch';

export const DROP_REASONS = ['buffer_full', 'rejected', 'retries_exhausted', 'shutdown', 'closed'] as const;
export type DropReason = (typeof DROP_REASONS)[number];

/** What the sink did with one record of a batch that reached it. */
export type ItemOutcome = 'shipped' | 'retry' | 'rejected';

export type SendResult =
  /** the sink answered; `items` (same order as the batch) absent = every record shipped */
  | { ok: true; items?: readonly ItemOutcome[] }
  /**
   * Nothing shipped; the whole batch is retried after a backoff. `charge`: the failure is the
   * batch's fault rather than the sink's (a refused request), so it costs each record one retry.
   */
  | { ok: false; error: string; charge: boolean };

export interface Sink<T> {
  readonly name: SinkName;
  /** Must not reject, and must settle soon after `signal` aborts. */
  send(batch: readonly T[], signal: AbortSignal): Promise<SendResult>;
  close(): Promise<void>;
}

export type ShipperOptions = {
  batchSize: number;
  /** ms a record may wait for a batch to fill, and the first backoff step */
  flushInterval: number;
  /** records waiting to be sent, at most (a batch in flight comes on top) */
  maxBuffer: number;
  maxBackoff: number;
  /** retries a record gets of its own before it is dropped (`retries_exhausted`) */
  maxRetries?: number;
};

/** Runs `fn` after `ms` (0 = as soon as the current I/O callbacks are done); returns a cancel. */
export type Scheduler = { after(ms: number, fn: () => void): () => void };

export type SinkStats = {
  enqueued: number;
  shipped: number;
  dropped: number;
  buffered: number;
  droppedBy: Record<DropReason, number>;
};

export const DEFAULT_MAX_RETRIES = 5;
/** floor of the backoff, so that `flushInterval: 0` cannot turn an outage into a busy loop */
const MIN_BACKOFF_MS = 10;

/** Node's timers, unref()ed: a pending flush never keeps the process alive. */
export const realScheduler: Scheduler = {
  after(ms, fn) {
    if (ms <= 0) {
      const immediate = setImmediate(fn);
      immediate.unref();
      return () => clearImmediate(immediate);
    }
    const timer = setTimeout(fn, ms);
    timer.unref();
    return () => clearTimeout(timer);
  },
};

/**
 * Delay before the next attempt after `failures` consecutive failures (>= 1): doubling from
 * `base` up to `max`, then "equal jitter" (between half and all of it) so that gateways that lost
 * Elasticsearch together do not come back in step.
 */
export function backoffDelay(failures: number, base: number, max: number, random: () => number): number {
  const floor = Math.max(base, MIN_BACKOFF_MS);
  const ceiling = Math.max(Math.min(max, floor * 2 ** Math.min(failures - 1, 30)), MIN_BACKOFF_MS);
  return ceiling / 2 + (random() * ceiling) / 2;
}

export type Sorted = {
  shipped: number;
  rejected: number;
  exhausted: number;
  /** indexes into the batch of the records to queue again, each with its new retry count */
  retry: number[];
  retryTries: number[];
};

/** Sorts a batch's per-record outcomes; a missing outcome is a retry (the sink did not say). */
export function sortOutcomes(
  items: readonly ItemOutcome[] | undefined,
  tries: readonly number[],
  maxRetries: number,
): Sorted {
  const sorted: Sorted = { shipped: 0, rejected: 0, exhausted: 0, retry: [], retryTries: [] };
  for (let i = 0; i < tries.length; i++) {
    const outcome = items === undefined ? 'shipped' : (items[i] ?? 'retry');
    if (outcome === 'shipped') sorted.shipped++;
    else if (outcome === 'rejected') sorted.rejected++;
    else chargeRetry(sorted, i, tries[i] ?? 0, maxRetries);
  }
  return sorted;
}

/** A whole batch that failed: retried as is, or, when `charge`, at the cost of one retry each. */
export function sortFailure(tries: readonly number[], charge: boolean, maxRetries: number): Sorted {
  const sorted: Sorted = { shipped: 0, rejected: 0, exhausted: 0, retry: [], retryTries: [] };
  for (let i = 0; i < tries.length; i++) {
    const t = tries[i] ?? 0;
    if (charge) chargeRetry(sorted, i, t, maxRetries);
    else {
      sorted.retry.push(i);
      sorted.retryTries.push(t);
    }
  }
  return sorted;
}

function chargeRetry(sorted: Sorted, i: number, tries: number, maxRetries: number): void {
  if (tries + 1 > maxRetries) sorted.exhausted++;
  else {
    sorted.retry.push(i);
    sorted.retryTries.push(tries + 1);
  }
}

type Batch<T> = { records: T[]; tries: number[]; abort: AbortController };

export class SinkShipper<T> {
  readonly name: SinkName;
  private readonly queue: RingQueue<T>;
  private readonly batchSize: number;
  private readonly flushInterval: number;
  private readonly maxBackoff: number;
  private readonly maxRetries: number;
  private readonly scheduler: Scheduler;
  private readonly random: () => number;
  private enqueued = 0;
  private shipped = 0;
  private readonly dropped: Record<DropReason, number> = {
    buffer_full: 0,
    rejected: 0,
    retries_exhausted: 0,
    shutdown: 0,
    closed: 0,
  };
  private inflight: Batch<T> | null = null;
  private sending: Promise<void> | null = null;
  /** consecutive sends that failed or had records to retry; > 0 = backing off */
  private failures = 0;
  /** the sink is failing whole requests (logged once when it starts and once when it ends) */
  private down = false;
  private cancelTimer: (() => void) | null = null;
  private timerMs = 0;
  private state: 'open' | 'closing' | 'closed' = 'open';
  private closing: Promise<void> | null = null;
  private readonly onTimer = (): void => {
    this.cancelTimer = null;
    void this.send();
  };

  constructor(
    private readonly sink: Sink<T>,
    options: ShipperOptions,
    private readonly logger: Logger,
    deps: { scheduler?: Scheduler; random?: () => number } = {},
  ) {
    this.name = sink.name;
    this.queue = new RingQueue<T>(options.maxBuffer);
    this.batchSize = Math.max(1, options.batchSize);
    this.flushInterval = Math.max(0, options.flushInterval);
    this.maxBackoff = options.maxBackoff;
    this.maxRetries = options.maxRetries ?? DEFAULT_MAX_RETRIES;
    this.scheduler = deps.scheduler ?? realScheduler;
    this.random = deps.random ?? Math.random;
  }

  /** Queues a record. Synchronous and O(1): the request path never waits for a sink. */
  push(record: T): void {
    this.enqueued++;
    if (this.state === 'closed') {
      this.dropped.closed++;
      return;
    }
    if (this.queue.push(record)) this.dropped.buffer_full++;
    // while a send is in flight or a backoff runs, the end of that decides what comes next
    if (this.sending !== null || this.failures > 0 || this.state !== 'open') return;
    if (this.queue.length >= this.batchSize) this.arm(0);
    else if (this.cancelTimer === null) this.arm(this.flushInterval);
  }

  stats(): SinkStats {
    let dropped = 0;
    for (const reason of DROP_REASONS) dropped += this.dropped[reason];
    return {
      enqueued: this.enqueued,
      shipped: this.shipped,
      dropped,
      buffered: this.queue.length + (this.inflight?.records.length ?? 0),
      droppedBy: { ...this.dropped },
    };
  }

  /**
   * Stops the timers and sends what is buffered (with backoff between failures) until nothing is
   * left or `timeoutMs` has passed; what is left then, a batch in flight included, is dropped as
   * `shutdown` (such a batch may still reach the sink: its outcome is no longer known).
   */
  close(timeoutMs: number): Promise<void> {
    this.closing ??= this.shutdown(timeoutMs);
    return this.closing;
  }

  private async shutdown(timeoutMs: number): Promise<void> {
    this.state = 'closing';
    this.disarm();
    let expired = timeoutMs <= 0;
    let expire: () => void = () => undefined;
    const deadline = new Promise<void>((resolve) => (expire = resolve));
    const cancelDeadline = expired
      ? () => undefined
      : this.scheduler.after(timeoutMs, () => {
          expired = true;
          expire();
        });
    try {
      while (!expired) {
        if (this.sending !== null) {
          await Promise.race([this.sending, deadline]);
          continue;
        }
        if (this.queue.length === 0) break;
        await Promise.race([this.send(), deadline]);
        if (this.failures > 0 && !expired && this.sending === null && this.queue.length > 0) {
          let cancel: () => void = () => undefined;
          const pause = new Promise<void>(
            (resolve) => (cancel = this.scheduler.after(this.backoff(), resolve)),
          );
          await Promise.race([pause, deadline]);
          cancel();
        }
      }
    } finally {
      cancelDeadline();
    }
    const batch = this.inflight;
    if (batch !== null) {
      this.inflight = null;
      this.sending = null;
      batch.abort.abort();
      this.dropped.shutdown += batch.records.length;
    }
    this.dropped.shutdown += this.queue.clear();
    this.state = 'closed';
    try {
      await this.sink.close();
    } catch (err) {
      this.logger.warn({ sink: this.name, err: errorText(err) }, 'access log sink did not close cleanly');
    }
  }

  private send(): Promise<void> {
    if (this.sending !== null) return this.sending;
    if (this.queue.length === 0 || this.state === 'closed') return Promise.resolve();
    this.disarm();
    const batch: Batch<T> = { records: [], tries: [], abort: new AbortController() };
    this.queue.shift(this.batchSize, batch.records, batch.tries);
    this.inflight = batch;
    let attempt: Promise<SendResult>;
    try {
      attempt = this.sink.send(batch.records, batch.abort.signal);
    } catch (err) {
      attempt = Promise.reject(err as Error);
    }
    this.sending = attempt
      .then(undefined, (err: unknown): SendResult => ({ ok: false, error: errorText(err), charge: false }))
      .then((result) => this.settle(batch, result))
      .catch((err: unknown) => {
        // a bug here must not become an unhandled rejection in the gateway
        this.logger.error({ sink: this.name, err: errorText(err) }, 'access log shipper failed');
      });
    return this.sending;
  }

  private settle(batch: Batch<T>, result: SendResult): void {
    // abandoned at the close deadline: its records are already counted as dropped
    if (this.inflight !== batch) return;
    this.inflight = null;
    this.sending = null;
    const sorted = result.ok
      ? sortOutcomes(result.items, batch.tries, this.maxRetries)
      : sortFailure(batch.tries, result.charge, this.maxRetries);
    this.shipped += sorted.shipped;
    this.dropped.rejected += sorted.rejected;
    this.dropped.retries_exhausted += sorted.exhausted;
    // back to the front, newest first, so the batch keeps its order; when the queue filled up
    // meanwhile these are the oldest records, the ones drop-oldest gives up
    for (let k = sorted.retry.length - 1; k >= 0; k--) {
      const record = batch.records[sorted.retry[k] ?? 0] as T;
      if (!this.queue.unshift(record, sorted.retryTries[k] ?? 0)) {
        this.dropped.buffer_full += k + 1;
        break;
      }
    }
    this.track(result, sorted.retry.length > 0);
    if (this.state !== 'open') return;
    if (this.failures > 0) this.arm(this.backoff());
    else if (this.queue.length >= this.batchSize) this.arm(0);
    else if (this.queue.length > 0) this.arm(this.flushInterval);
  }

  private track(result: SendResult, retrying: boolean): void {
    if (!result.ok) {
      if (!this.down)
        this.logger.warn(
          { sink: this.name, err: result.error },
          'access log sink failing: records kept and retried with backoff',
        );
      this.down = true;
      this.failures++;
      return;
    }
    if (this.down) this.logger.info({ sink: this.name }, 'access log sink recovered');
    this.down = false;
    // records to retry mean the sink is pushing back (429): slow down as for a failure
    this.failures = retrying ? this.failures + 1 : 0;
  }

  private backoff(): number {
    return backoffDelay(Math.max(1, this.failures), this.flushInterval, this.maxBackoff, this.random);
  }

  private arm(ms: number): void {
    if (this.cancelTimer !== null) {
      if (ms >= this.timerMs) return;
      this.cancelTimer();
    }
    this.timerMs = ms;
    this.cancelTimer = this.scheduler.after(ms, this.onTimer);
  }

  private disarm(): void {
    this.cancelTimer?.();
    this.cancelTimer = null;
  }
}

/**
 * Concatenates the records' serialisations. A record that cannot be serialised is `rejected`
 * (`items` is then present) instead of failing its batch, which would retry it forever.
 */
export function serialise<T>(
  batch: readonly T[],
  line: (record: T) => string,
): { text: string; items: ItemOutcome[] | undefined } {
  let text = '';
  let items: ItemOutcome[] | undefined;
  for (let i = 0; i < batch.length; i++) {
    try {
      text += line(batch[i] as T);
    } catch {
      items ??= new Array<ItemOutcome>(batch.length).fill('shipped');
      items[i] = 'rejected';
    }
  }
  return { text, items };
}

export function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'string' ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}
