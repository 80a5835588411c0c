/**
 * Reads key records for the API key authenticator, protecting the database and the requests
 * from each other:
 *
 * - At most `maxInFlight` reads at once, below the pool's size: reads never wait inside the
 *   pool, whose wait timeout would look like a database failure. Ids asked for meanwhile queue
 *   and go together in the next read (up to `batchSize` ids per SELECT), known ids first: a
 *   flood of made-up ids costs a few batched SELECTs, and known keys are read before it.
 * - Waiting is bounded: past `maxQueued` waiting ids, or after `maxWait` in the queue, the
 *   answer is `unavailable` (503). That is overload, not a database failure: it does not
 *   start the fail-fast window.
 * - A failed read (error, timeout) makes reads fail at once for `retryAfter`; then one read, the
 *   probe, tries the database while every other request keeps failing at once, until the probe
 *   is answered: with a hung database, one request per window waits, not all of them.
 *
 * All durations use the injected monotonic clock.
 */
import type { Clock } from '../../clock.js';
import type { ApiKeyRecord, KeyReads } from '../../stores/database.js';

export type LoaderOptions = {
  readonly maxInFlight: number;
  readonly batchSize: number;
  readonly maxQueued: number;
  readonly maxWait: number;
  readonly retryAfter: number;
};

/** What a read found for one id, the database's clock then, and when (monotonic) it was sent. */
export type Read = { readonly record: ApiKeyRecord | null; readonly dbTime: number; readonly readAt: number };
export type LoadOutcome = Read | 'unavailable';

export type LoaderEvents = {
  /** the first failed read after a success: the fail-fast window starts */
  down(err: unknown): void;
  /** a read succeeded after failures */
  up(): void;
};

type Waiter = { readonly id: string; readonly since: number; readonly resolve: (o: LoadOutcome) => void };

const UNAVAILABLE: Promise<LoadOutcome> = Promise.resolve('unavailable');

export class KeyLoader {
  private inFlight = 0;
  /** waiting ids whose keys were seen before (a record in the cache), and the others */
  private readonly knownQueue: Waiter[] = [];
  private readonly unknownQueue: Waiter[] = [];
  private down = false;
  /** monotonic ms until which reads fail at once (while `down`) */
  private downUntil = 0;
  /** a probe read is running (while `down`) */
  private probing = false;

  constructor(
    private readonly read: (ids: string[]) => Promise<KeyReads>,
    private readonly opts: LoaderOptions,
    private readonly clock: Clock,
    private readonly events: LoaderEvents,
  ) {}

  /** `known`: the id had a record (it goes before ids never seen) */
  load(id: string, known: boolean): Promise<LoadOutcome> {
    const now = this.clock.now();
    if (this.down) {
      if (this.probing || now < this.downUntil) return UNAVAILABLE;
      this.probing = true;
      return new Promise((resolve) => this.dispatch([{ id, since: now, resolve }], now));
    }
    this.expireWaiting(now);
    return new Promise((resolve) => {
      const waiter = { id, since: now, resolve };
      if (this.inFlight < this.opts.maxInFlight) this.dispatch([waiter], now);
      else if (this.knownQueue.length + this.unknownQueue.length >= this.opts.maxQueued)
        resolve('unavailable');
      else (known ? this.knownQueue : this.unknownQueue).push(waiter);
    });
  }

  /** the store is failing (fail-fast window or probe running) */
  get isDown(): boolean {
    return this.down;
  }

  private dispatch(batch: Waiter[], now: number): void {
    this.inFlight++;
    const ids = [...new Set(batch.map((w) => w.id))];
    this.read(ids)
      .then(
        (reads) => {
          if (this.down) {
            this.down = false;
            this.probing = false;
            this.events.up();
          }
          const found = new Map<string, ApiKeyRecord>();
          for (const r of reads.records) found.set(r.id, r);
          for (const w of batch)
            w.resolve({ record: found.get(w.id) ?? null, dbTime: reads.dbTime, readAt: now });
        },
        (err: unknown) => {
          if (!this.down) this.events.down(err);
          this.down = true;
          this.probing = false;
          this.downUntil = this.clock.now() + this.opts.retryAfter;
          for (const w of batch) w.resolve('unavailable');
          // nothing waits for a database that just failed
          for (const w of this.knownQueue.splice(0)) w.resolve('unavailable');
          for (const w of this.unknownQueue.splice(0)) w.resolve('unavailable');
        },
      )
      .finally(() => {
        this.inFlight--;
        this.pump();
      });
  }

  /** Starts reads for the waiting ids while there is room, in batches, known ids first. */
  private pump(): void {
    while (!this.down && this.inFlight < this.opts.maxInFlight) {
      const now = this.clock.now();
      const batch: Waiter[] = [];
      this.take(this.knownQueue, batch, now);
      this.take(this.unknownQueue, batch, now);
      if (batch.length === 0) {
        if (this.knownQueue.length + this.unknownQueue.length === 0) return;
        continue; // only expired waiters were taken
      }
      this.dispatch(batch, now);
    }
  }

  /**
   * Answers the waiters past `maxWait` (the oldest are first) without waiting for a read to end:
   * reads that hang until their timeout must not hold the queue longer than `maxWait`.
   */
  private expireWaiting(now: number): void {
    for (const queue of [this.knownQueue, this.unknownQueue]) {
      let n = 0;
      while (n < queue.length && now - (queue[n] as Waiter).since > this.opts.maxWait) {
        (queue[n++] as Waiter).resolve('unavailable');
      }
      if (n > 0) queue.splice(0, n);
    }
  }

  private take(queue: Waiter[], batch: Waiter[], now: number): void {
    let n = 0;
    while (n < queue.length && batch.length < this.opts.batchSize) {
      const w = queue[n++] as Waiter;
      if (now - w.since > this.opts.maxWait) w.resolve('unavailable');
      else batch.push(w);
    }
    queue.splice(0, n);
  }
}
