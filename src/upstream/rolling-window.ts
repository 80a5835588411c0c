/**
 * Counts of successes and failures over a rolling time window, kept in fixed buckets (a window
 * of 10 s in 10 buckets of 1 s): recording is O(1) with no allocation, and old buckets expire
 * by their epoch rather than by a timer. Used by the circuit breaker and the retry budget.
 */
export class RollingWindow {
  private readonly bucketMs: number;
  private readonly epochs: Float64Array;
  private readonly totals: Uint32Array;
  private readonly failures: Uint32Array;

  constructor(windowMs: number, buckets = 10) {
    this.bucketMs = Math.max(1, Math.ceil(windowMs / buckets));
    this.epochs = new Float64Array(buckets).fill(-1);
    this.totals = new Uint32Array(buckets);
    this.failures = new Uint32Array(buckets);
  }

  record(now: number, failed: boolean): void {
    const i = this.slot(now);
    this.totals[i] = (this.totals[i] as number) + 1;
    if (failed) this.failures[i] = (this.failures[i] as number) + 1;
  }

  /** requests and failures in the window ending at `now` */
  counts(now: number): { total: number; failed: number } {
    const current = Math.floor(now / this.bucketMs);
    const oldest = current - this.epochs.length + 1;
    let total = 0;
    let failed = 0;
    for (let i = 0; i < this.epochs.length; i++) {
      const epoch = this.epochs[i] as number;
      if (epoch >= oldest && epoch <= current) {
        total += this.totals[i] as number;
        failed += this.failures[i] as number;
      }
    }
    return { total, failed };
  }

  reset(): void {
    this.epochs.fill(-1);
    this.totals.fill(0);
    this.failures.fill(0);
  }

  /** the bucket for `now`, emptied first when it still holds an older epoch */
  private slot(now: number): number {
    const epoch = Math.floor(now / this.bucketMs);
    const i = epoch % this.epochs.length;
    if (this.epochs[i] !== epoch) {
      this.epochs[i] = epoch;
      this.totals[i] = 0;
      this.failures[i] = 0;
    }
    return i;
  }
}
