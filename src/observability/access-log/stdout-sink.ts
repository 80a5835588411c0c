/**
 * The stdout sink: each record as one pino-style JSON line (`level` 30, `msg` "access", then the
 * record's fields), a batch written with one call to an asynchronous destination, so a slow
 * stdout pipe never blocks the event loop. A batch counts as shipped once the destination has
 * taken it without asking to slow down, or else once it has drained (until then it is in flight,
 * and the next batch waits).
 */
import { destination as pinoDestination } from 'pino';
import type { Logger } from '../logger.js';
import type { AccessRecord } from './record.js';
import { errorText, serialise, type SendResult, type Sink } from './shipper.js';

/** What the sink writes to: sonic-boom (pino.destination) in production, any Writable in tests. */
export interface LineDestination {
  write(chunk: string): boolean;
  on(event: 'error', listener: (err: Error) => void): unknown;
  once(event: 'drain' | 'close' | 'error', listener: () => void): unknown;
  removeListener(event: 'drain' | 'close' | 'error', listener: () => void): unknown;
  readonly destroyed?: boolean;
}

const SHIPPED: SendResult = { ok: true };

/** One line: the record's fields after the `level` and `msg` that pino tooling expects. */
export function accessLine(record: AccessRecord): string {
  return `{"level":30,"msg":"access",${JSON.stringify(record).slice(1)}\n`;
}

export class StdoutSink implements Sink<AccessRecord> {
  readonly name = 'stdout';
  private broken: string | null = null;

  /**
   * `destination` defaults to fd 1 through pino's sonic-boom with `sync: false`, which pino
   * flushes synchronously when the process exits.
   */
  constructor(
    private readonly logger: Logger,
    private readonly destination: LineDestination = pinoDestination({ dest: 1, sync: false }),
  ) {
    // an unhandled 'error' would crash the gateway; after one, every batch fails and the buffer
    // fills (counted as buffer_full) rather than records vanishing into a dead stream
    destination.on('error', (err) => {
      if (this.broken === null) this.logger.warn({ err: errorText(err) }, 'access log stdout failed');
      this.broken = errorText(err);
    });
  }

  send(batch: readonly AccessRecord[], signal: AbortSignal): Promise<SendResult> {
    if (this.broken !== null) return Promise.resolve({ ok: false, error: this.broken, charge: false });
    if (this.destination.destroyed === true)
      return Promise.resolve({ ok: false, error: 'destination destroyed', charge: false });
    const { text, items } = serialise(batch, accessLine);
    const shipped: SendResult = items === undefined ? SHIPPED : { ok: true, items };
    // sonic-boom's write is a no-op returning undefined after EPIPE: only `false` means wait
    if (text === '' || this.destination.write(text) !== false) return Promise.resolve(shipped);
    return new Promise((resolve) => {
      const done = (): void => {
        this.destination.removeListener('drain', done);
        this.destination.removeListener('close', done);
        this.destination.removeListener('error', done);
        signal.removeEventListener('abort', done);
        resolve(shipped);
      };
      this.destination.once('drain', done);
      this.destination.once('close', done);
      this.destination.once('error', done);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /** fd 1 stays open (the process logger shares it); pino flushes it at exit. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
