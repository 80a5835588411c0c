/**
 * `limits.sendTimeout`: a client that takes no byte of its response for that long is cut, which
 * aborts the upstream exchange (the response 'close' listener) and frees its pooled connection.
 * Without it, a client that stops reading holds the connection for as long as it stays connected:
 * the paused upstream socket is not subject to undici's body timeout. One timer per response,
 * armed only when back-pressure starts and refreshed, never one per chunk. The clock measures
 * time without progress, not the whole response: when it fires, a backlog that shrank meanwhile
 * (the client took at least one whole buffered write) starts it again.
 */
import type { ServerResponse } from 'node:http';

export class SendWatch {
  private timer: NodeJS.Timeout | null = null;
  /** back-pressure is on (no 'drain' since it started) */
  private waiting = false;
  /** bytes the client had yet to take when the clock last (re)started */
  private backlog = 0;

  constructor(
    private readonly res: ServerResponse,
    /** ms (> 0) */
    private readonly limit: number,
  ) {}

  /** The client has bytes buffered it has not taken: (re)start the clock. */
  watch(): void {
    if (this.res.destroyed) return;
    this.waiting = true;
    this.backlog = this.res.writableLength;
    if (this.timer === null) this.timer = setTimeout(SendWatch.onTimer, this.limit, this);
    else this.timer.refresh();
  }

  /** 'drain': the client took everything buffered */
  drained(): void {
    this.waiting = false;
  }

  stop(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  /**
   * Timers run before the loop polls for I/O: after this process stalled (GC, a busy host), the
   * writes the client completed meanwhile are not counted yet. The verdict waits for the poll.
   */
  private static onTimer(this: void, watch: SendWatch): void {
    setImmediate(SendWatch.judge, watch);
  }

  private static judge(this: void, watch: SendWatch): void {
    const res = watch.res;
    if (!watch.waiting || res.destroyed) return;
    const backlog = res.writableLength;
    if (backlog < watch.backlog) {
      watch.backlog = backlog;
      watch.timer?.refresh();
      return;
    }
    res.destroy(); // 'close' → onClientClose: the upstream exchange stops and its connection is freed
  }
}
