/** limits.sendTimeout's verdict, on fake timers: a client that takes nothing is cut, one that progresses is not. */
import type { ServerResponse } from 'node:http';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SendWatch } from '../../src/upstream/send-watch.js';

/** What SendWatch reads of a response: its backlog, and whether it was cut. */
function response() {
  const res = {
    destroyed: false,
    writableLength: 0,
    destroy() {
      res.destroyed = true;
    },
  };
  return res;
}
const watching = (res: ReturnType<typeof response>, limit: number) =>
  new SendWatch(res as unknown as ServerResponse, limit);

/** fake time passes (an immediate a timer queues runs once the clock moves on past it) */
const elapse = (ms: number) => vi.advanceTimersByTimeAsync(ms);

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'clearImmediate'] });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('SendWatch', () => {
  it('cuts a client that takes no byte for the limit', async () => {
    const res = response();
    res.writableLength = 1000;
    watching(res, 100).watch();
    await elapse(99);
    expect(res.destroyed).toBe(false);
    await elapse(2); // the timer at 100, the verdict in the immediate after it
    expect(res.destroyed).toBe(true);
  });

  it('starts again when the backlog shrank meanwhile, and cuts once progress stops', async () => {
    const res = response();
    res.writableLength = 1000;
    watching(res, 100).watch();
    await elapse(50);
    res.writableLength = 400; // the client took some
    await elapse(100); // the verdict at ~101: progress, so the clock starts again
    expect(res.destroyed).toBe(false);
    await elapse(60); // ~100 ms without progress since
    expect(res.destroyed).toBe(true);
  });

  it('leaves a client that drained alone, and stops with the response', async () => {
    const res = response();
    res.writableLength = 1000;
    const watch = watching(res, 100);
    watch.watch();
    watch.drained();
    await elapse(200);
    expect(res.destroyed).toBe(false);
    watch.watch();
    watch.stop();
    await elapse(200);
    expect(res.destroyed).toBe(false);
  });
});
