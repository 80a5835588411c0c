/**
 * A bound on log lines that clients can cause (one per malformed request, one per request that
 * makes a handler fail): at most `perSecond` lines in each one-second window. Lines left out are
 * counted, and one line reporting how many goes out when their window ends, so a flood leaves a
 * trace without flooding the log. Metrics count every event; this only thins the log.
 */

export type SamplerClock = {
  /** milliseconds, monotonic */
  now(): number;
  /** calls `fn` after `ms`, without keeping the process alive */
  later(ms: number, fn: () => void): void;
};

const systemClock: SamplerClock = {
  now: () => performance.now(),
  later: (ms, fn) => void setTimeout(fn, ms).unref(),
};

const WINDOW_MS = 1000;

export class LogSampler {
  private windowStart = Number.NEGATIVE_INFINITY;
  private admitted = 0;
  private suppressed = 0;

  constructor(
    private readonly perSecond: number,
    /** told how many lines were left out, once their window has ended */
    private readonly onSuppressed: (count: number) => void,
    private readonly clock: SamplerClock = systemClock,
  ) {}

  /** true: write the line now; false: it is counted as suppressed. */
  admit(): boolean {
    const now = this.clock.now();
    if (now - this.windowStart >= WINDOW_MS) {
      this.windowStart = now;
      this.admitted = 0;
    }
    if (this.admitted < this.perSecond) {
      this.admitted++;
      return true;
    }
    if (this.suppressed++ === 0) this.clock.later(this.windowStart + WINDOW_MS - now, () => this.report());
    return false;
  }

  private report(): void {
    const count = this.suppressed;
    this.suppressed = 0;
    this.onSuppressed(count);
  }
}
