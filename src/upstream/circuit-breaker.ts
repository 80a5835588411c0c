/**
 * A per-service circuit breaker over a rolling window. Closed: requests flow and their outcomes
 * are counted; when the window holds at least `minRequests` and the failed share reaches
 * `errorRate`, it opens. Open: requests fail fast until `openFor` has passed. Half-open: up to
 * `probes` requests go through; one failure re-opens it, `probes` successes close it (with an
 * empty window). Results carry the generation they were admitted in, so a slow request admitted
 * before the breaker opened cannot be mistaken for a probe. The clock is injected: the state
 * machine is tested without sleeping.
 */
import { systemClock, type Clock } from '../clock.js';
import type { CircuitBreakerConfig } from '../config/schema.js';
import { RollingWindow } from './rolling-window.js';

export type BreakerState = 'closed' | 'half-open' | 'open';
export type Outcome = 'success' | 'failure' | 'cancelled';

/** `admit` answer when the request must fail fast */
export const REJECTED = -1;

export class CircuitBreaker {
  private current: BreakerState = 'closed';
  private generation = 0;
  private openedAt = 0;
  private probesInFlight = 0;
  private probeSuccesses = 0;
  private readonly window: RollingWindow;

  constructor(
    private readonly config: CircuitBreakerConfig,
    private readonly onChange: (state: BreakerState) => void = () => undefined,
    /** monotonic by default: the open period is a duration */
    private readonly clock: Clock = systemClock,
  ) {
    this.window = new RollingWindow(config.window);
  }

  get state(): BreakerState {
    if (this.current === 'open' && this.clock.now() - this.openedAt >= this.config.openFor)
      return 'half-open';
    return this.current;
  }

  /**
   * May a request go to the service now? Returns the generation to hand back to `record`, or
   * REJECTED (see `retryAfterMs`).
   */
  admit(): number {
    if (!this.config.enabled || this.current === 'closed') return this.generation;
    if (this.current === 'open') {
      if (this.clock.now() - this.openedAt < this.config.openFor) return REJECTED;
      this.transition('half-open');
    }
    if (this.probesInFlight + this.probeSuccesses >= this.config.probes) return REJECTED;
    this.probesInFlight++;
    return this.generation;
  }

  /** Would `admit` let a request through now? (Nothing is taken: no probe slot, no transition.) */
  wouldAdmit(): boolean {
    if (!this.config.enabled || this.current === 'closed') return true;
    if (this.current === 'open') return this.clock.now() - this.openedAt >= this.config.openFor;
    return this.probesInFlight + this.probeSuccesses < this.config.probes;
  }

  record(generation: number, outcome: Outcome): void {
    if (!this.config.enabled || generation !== this.generation) return;
    if (this.current === 'closed') {
      if (outcome === 'cancelled') return;
      const now = this.clock.now();
      this.window.record(now, outcome === 'failure');
      if (outcome === 'failure') {
        const { total, failed } = this.window.counts(now);
        if (total >= this.config.minRequests && failed / total >= this.config.errorRate) this.open(now);
      }
      return;
    }
    if (this.current !== 'half-open') return;
    this.probesInFlight--;
    if (outcome === 'failure') this.open(this.clock.now());
    else if (outcome === 'success' && ++this.probeSuccesses >= this.config.probes) {
      this.window.reset();
      this.transition('closed');
    }
  }

  /** how long until a probe may go through (0 unless open) */
  retryAfterMs(): number {
    if (this.current === 'open') return Math.max(0, this.openedAt + this.config.openFor - this.clock.now());
    return 0;
  }

  /** the window's counts, for the admin API */
  counts(): { total: number; failed: number } {
    return this.window.counts(this.clock.now());
  }

  /** Closed now, with an empty window: an operator decided the service is fine (admin API). */
  reset(): void {
    this.window.reset();
    if (this.current !== 'closed') this.transition('closed');
  }

  private open(now: number): void {
    this.openedAt = now;
    this.transition('open');
  }

  private transition(to: BreakerState): void {
    this.current = to;
    this.generation++;
    this.probesInFlight = 0;
    this.probeSuccesses = 0;
    this.onChange(to);
  }
}
