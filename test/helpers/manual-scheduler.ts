/** Timers that run only when a test advances their clock: an access-log Scheduler without sleeps. */
import type { Scheduler } from '../../src/observability/access-log/shipper.js';

/** Timers that run only when the test advances the clock. */
export class ManualScheduler implements Scheduler {
  now = 0;
  private seq = 0;
  private tasks: Array<{ at: number; seq: number; fn: () => void }> = [];

  after(ms: number, fn: () => void): () => void {
    const task = { at: this.now + Math.max(0, ms), seq: this.seq++, fn };
    this.tasks.push(task);
    return () => void (this.tasks = this.tasks.filter((t) => t !== task));
  }

  /** delays of the pending timers, from now */
  get pending(): number[] {
    return this.tasks.map((t) => t.at - this.now);
  }

  /** Runs every timer due within `ms`, in order, letting promise chains settle after each. */
  async advance(ms: number): Promise<void> {
    const target = this.now + ms;
    while (true) {
      await settle();
      const due = this.tasks.filter((t) => t.at <= target).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (due === undefined) break;
      this.tasks = this.tasks.filter((t) => t !== due);
      this.now = due.at;
      due.fn();
    }
    this.now = target;
    await settle();
  }
}

/** lets pending I/O callbacks and promise chains run (one turn of the event loop, no time) */
export const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
