/**
 * When the primary replaces a worker that died. A crash is restarted after a delay that doubles
 * with each crash in the last `windowMs` (from `baseDelayMs` up to `maxDelayMs`), so a worker that
 * cannot start does not spin a core; more than `maxCrashes` crashes within the window is a crash
 * loop: the primary gives up (and exits 1, so that its supervisor sees it). A clean exit (a
 * worker stopped on its own, exit code 0) is replaced after the base delay and is not a crash.
 * Pure: the caller passes the time.
 */
export type RestartPolicyOptions = {
  baseDelayMs: number;
  maxDelayMs: number;
  maxCrashes: number;
  windowMs: number;
};

export const DEFAULT_RESTART_POLICY: RestartPolicyOptions = {
  baseDelayMs: 100,
  maxDelayMs: 5000,
  maxCrashes: 5,
  windowMs: 60_000,
};

export type RestartDecision =
  { restart: true; delayMs: number; recentCrashes: number } | { restart: false; recentCrashes: number };

export class RestartPolicy {
  /** times of the crashes within the window, oldest first */
  private readonly crashes: number[] = [];

  constructor(private readonly options: RestartPolicyOptions = DEFAULT_RESTART_POLICY) {}

  /** A worker crashed at `now` (ms, any monotonic clock). */
  crashed(now: number): RestartDecision {
    const { baseDelayMs, maxDelayMs, maxCrashes, windowMs } = this.options;
    while (this.crashes.length > 0 && (this.crashes[0] as number) <= now - windowMs) this.crashes.shift();
    this.crashes.push(now);
    const recentCrashes = this.crashes.length;
    if (recentCrashes > maxCrashes) return { restart: false, recentCrashes };
    const delayMs = Math.min(maxDelayMs, baseDelayMs * 2 ** (recentCrashes - 1));
    return { restart: true, delayMs, recentCrashes };
  }

  /** A worker exited cleanly: replaced after the base delay, not counted. */
  exited(): number {
    return this.options.baseDelayMs;
  }
}
