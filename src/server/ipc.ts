/**
 * Calls and notices between the primary and its workers over node:cluster's IPC channel. A call
 * is answered once (or rejected after its timeout, or when the channel closes: a worker that
 * died answers nothing); a notice has no answer. Every message is tagged, so node:cluster's own
 * messages pass by untouched. Both sides use one `IpcPeer` each way: the primary one per worker,
 * a worker one for its primary.
 */
const TAG = 'gatehouse';

type Call = { [TAG]: 'call'; id: number; method: string; payload: unknown };
type Reply = { [TAG]: 'reply'; id: number; ok: boolean; value?: unknown; error?: string };
type Notice = { [TAG]: 'notice'; name: string; payload: unknown };
type Message = Call | Reply | Notice;

export type Handler = (payload: unknown) => unknown;

export class IpcClosedError extends Error {
  readonly code = 'IPC_CLOSED';
}

export class IpcPeer {
  private nextId = 0;
  private readonly pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }
  >();
  private readonly handlers = new Map<string, Handler>();
  private readonly listeners = new Map<string, Array<(payload: unknown) => void>>();
  private closed = false;

  /**
   * `send` writes one message (false or a throw when the channel is gone); the owner passes every
   * message it receives to `receive` and calls `close` when the channel closes.
   */
  constructor(private readonly send: (msg: Message) => boolean) {}

  /** Answers calls of `method` with what `fn` returns (or a rejection's message). */
  handle(method: string, fn: Handler): void {
    this.handlers.set(method, fn);
  }

  on(name: string, fn: (payload: unknown) => void): void {
    const list = this.listeners.get(name) ?? [];
    list.push(fn);
    this.listeners.set(name, list);
  }

  call<T>(method: string, payload: unknown, timeoutMs: number): Promise<T> {
    if (this.closed) return Promise.reject(new IpcClosedError(`${method}: the channel is closed`));
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      if (!this.write({ [TAG]: 'call', id, method, payload })) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(new IpcClosedError(`${method}: the channel is closed`));
      }
    });
  }

  notify(name: string, payload: unknown = null): boolean {
    return this.write({ [TAG]: 'notice', name, payload });
  }

  /** Feeds one received message; returns false when it is not one of ours. */
  receive(msg: unknown): boolean {
    if (typeof msg !== 'object' || msg === null || !(TAG in msg)) return false;
    const m = msg as Message;
    switch (m[TAG]) {
      case 'call':
        this.answer(m);
        return true;
      case 'reply': {
        const p = this.pending.get(m.id);
        if (p === undefined) return true; // timed out already
        this.pending.delete(m.id);
        clearTimeout(p.timer);
        if (m.ok) p.resolve(m.value);
        else p.reject(new Error(m.error ?? 'failed'));
        return true;
      }
      case 'notice':
        for (const fn of this.listeners.get(m.name) ?? []) fn(m.payload);
        return true;
      default:
        return false;
    }
  }

  /** The channel is gone: pending calls are rejected, later ones fail at once. */
  close(): void {
    this.closed = true;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new IpcClosedError('the channel closed before an answer'));
      this.pending.delete(id);
    }
  }

  private answer(call: Call): void {
    const fn = this.handlers.get(call.method);
    const reply = (ok: boolean, value: unknown, error?: string) =>
      this.write({ [TAG]: 'reply', id: call.id, ok, value, ...(error === undefined ? {} : { error }) });
    if (fn === undefined) {
      reply(false, undefined, `no handler for ${call.method}`);
      return;
    }
    new Promise((resolve) => resolve(fn(call.payload))).then(
      (value) => reply(true, value),
      (err: unknown) => reply(false, undefined, err instanceof Error ? err.message : String(err)),
    );
  }

  private write(msg: Message): boolean {
    if (this.closed) return false;
    try {
      return this.send(msg);
    } catch {
      return false; // the channel closed meanwhile (ERR_IPC_CHANNEL_CLOSED)
    }
  }
}
