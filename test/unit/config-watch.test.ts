/**
 * The config watcher's decisions, with the file system and the clock in the test's hands: when a
 * reload is asked for (after the debounce, for new content only, once per content), what a burst
 * of events, a touch, an unreadable file, a reload in progress and a broken watch lead to.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { watchConfigFile, type WatchIo } from '../../src/server/config-watch.js';

type Timer = { at: number; fn: () => void; every?: number };

/** A directory with one file, a manual clock, and the reloads asked for. */
function harness(options: { debounceMs?: number; pollMs?: number; watchThrows?: boolean } = {}) {
  let now = 0;
  const timers = new Set<Timer>();
  let content: string | null = 'a: 1\n';
  let onEvent: (() => void) | null = null;
  let onError: ((err: Error) => void) | null = null;
  let watchCalls = 0;
  let reads = 0;
  const reloads: string[] = [];
  let finishReload: (() => void) | null = null;
  let holdReloads = false;
  const logs: Array<{ level: number; msg: string }> = [];
  const logger = pino({ level: 'debug' }, { write: (l: string) => logs.push(JSON.parse(l) as never) });

  const io: WatchIo = {
    watchDir(_dir, event, error) {
      watchCalls++;
      if (options.watchThrows) throw Object.assign(new Error('no space'), { code: 'ENOSPC' });
      onEvent = event;
      onError = error;
      return {
        close: () => {
          onEvent = null;
        },
      };
    },
    read: () => {
      reads++;
      if (content === null) return Promise.reject(Object.assign(new Error('gone'), { code: 'ENOENT' }));
      return Promise.resolve(Buffer.from(content));
    },
    setTimeout: (fn, ms) => {
      const t: Timer = { at: now + ms, fn };
      timers.add(t);
      return t;
    },
    clearTimeout: (t) => timers.delete(t as Timer),
    setInterval: (fn, ms) => {
      const t: Timer = { at: now + ms, fn, every: ms };
      timers.add(t);
      return t;
    },
    clearInterval: (t) => timers.delete(t as Timer),
  };

  const watcher = watchConfigFile('/etc/gatehouse/gatehouse.yaml', {
    logger,
    debounceMs: options.debounceMs ?? 200,
    pollMs: options.pollMs ?? 0,
    io,
    reload: () => {
      reloads.push(content ?? '(unreadable)');
      if (!holdReloads) return Promise.resolve();
      return new Promise<void>((resolve) => (finishReload = resolve));
    },
  });

  /** lets the promise chains (reads, reloads) run */
  const settle = async () => {
    for (let i = 0; i < 20; i++) await Promise.resolve();
    await new Promise((r) => setImmediate(r));
  };

  return {
    watcher,
    reloads,
    logs,
    get reads() {
      return reads;
    },
    get watchCalls() {
      return watchCalls;
    },
    set content(v: string | null) {
      content = v;
    },
    event() {
      if (!onEvent) throw new Error('not watching');
      onEvent();
    },
    breakWatch() {
      onError?.(new Error('watch broke'));
    },
    holdReloads() {
      holdReloads = true;
    },
    async finishReload() {
      const f = finishReload;
      finishReload = null;
      holdReloads = false;
      f?.();
      await settle();
    },
    settle,
    /** moves the clock, running due timers in order */
    async advance(ms: number) {
      const end = now + ms;
      for (;;) {
        const due = [...timers].filter((t) => t.at <= end).sort((a, b) => a.at - b.at)[0];
        if (!due) break;
        now = due.at;
        if (due.every) due.at += due.every;
        else timers.delete(due);
        due.fn();
        await settle();
      }
      now = end;
      await settle();
    },
  };
}

describe('config watcher', () => {
  it('asks for one reload per burst of events, once the debounce is over', async () => {
    const h = harness();
    await h.settle();
    h.content = 'a: 2\n';
    for (let i = 0; i < 5; i++) {
      h.event(); // a ConfigMap swap: ..2026_x created, ..data_tmp, rename to ..data, old removed
      await h.advance(50);
    }
    expect(h.reloads).toEqual([]); // 50 ms apart: the debounce keeps restarting
    await h.advance(149); // 199 ms after the last event

    expect(h.reloads).toEqual([]);
    await h.advance(1);
    expect(h.reloads).toEqual(['a: 2\n']);
    await h.advance(10_000);
    expect(h.reloads).toHaveLength(1);
  });

  it('does nothing when the content is what it was (a touch, a re-swap of the same data)', async () => {
    const h = harness();
    await h.settle();
    h.event();
    await h.advance(500);
    expect(h.reads).toBe(2); // the start, then the check
    expect(h.reloads).toEqual([]);
    h.content = 'a: 2\n';
    h.event();
    await h.advance(500);
    h.event();
    await h.advance(500);
    expect(h.reloads).toEqual(['a: 2\n']);
    h.content = 'a: 1\n'; // back to the first content is a change too
    h.event();
    await h.advance(500);
    expect(h.reloads).toEqual(['a: 2\n', 'a: 1\n']);
  });

  it('tries an invalid file once, however many events and re-reads follow, and the next change again', async () => {
    const h = harness();
    await h.settle();
    h.content = 'listen: { port: nope }\n';
    for (let i = 0; i < 4; i++) {
      h.event();
      await h.advance(1000);
    }
    expect(h.reloads).toEqual(['listen: { port: nope }\n']);
    h.content = 'a: 3\n';
    h.event();
    await h.advance(1000);
    expect(h.reloads).toEqual(['listen: { port: nope }\n', 'a: 3\n']);
  });

  it('a file that disappears is one change (the reload reports it), and its return another', async () => {
    const h = harness();
    await h.settle();
    h.content = null;
    h.event();
    await h.advance(300);
    h.event();
    await h.advance(300);
    expect(h.reloads).toEqual(['(unreadable)']);
    h.content = 'a: 1\n';
    h.event();
    await h.advance(300);
    expect(h.reloads).toEqual(['(unreadable)', 'a: 1\n']);
  });

  it('a change while a reload runs is looked at when it is done, not joined to it', async () => {
    const h = harness();
    await h.settle();
    h.holdReloads();
    h.content = 'a: 2\n';
    h.event();
    await h.advance(200);
    expect(h.reloads).toEqual(['a: 2\n']);
    h.content = 'a: 3\n';
    h.event();
    await h.advance(200); // due, but the reload of a: 2 is still running
    expect(h.reloads).toEqual(['a: 2\n']);
    await h.finishReload();
    expect(h.reloads).toEqual(['a: 2\n', 'a: 3\n']);
  });

  it('the periodic check sees a change no event announced (a filesystem without inotify)', async () => {
    const h = harness({ pollMs: 10_000 });
    await h.settle();
    h.content = 'a: 2\n';
    await h.advance(9_999);
    expect(h.reloads).toEqual([]);
    await h.advance(1);
    expect(h.reloads).toEqual(['a: 2\n']);
    await h.advance(30_000);
    expect(h.reloads).toHaveLength(1);
  });

  it('a directory that cannot be watched is logged once and polled; a broken watch is set up again', async () => {
    const h = harness({ pollMs: 10_000, watchThrows: true });
    await h.settle();
    await h.advance(60_000); // retried every 5 s, warned once
    expect(h.watchCalls).toBeGreaterThan(5);
    expect(h.logs.filter((l) => l.msg === 'config watch: cannot watch the directory')).toHaveLength(1);
    h.content = 'a: 2\n';
    await h.advance(10_000);
    expect(h.reloads).toEqual(['a: 2\n']);

    const g = harness();
    await g.settle();
    g.breakWatch();
    expect(() => g.event()).toThrow('not watching');
    g.content = 'a: 2\n';
    await g.advance(1000); // watched again, and the file looked at once more
    expect(g.reloads).toEqual(['a: 2\n']);
    g.content = 'a: 3\n';
    g.event();
    await g.advance(200);
    expect(g.reloads).toEqual(['a: 2\n', 'a: 3\n']);
  });

  it('asks for nothing after close, and leaves no timer behind', async () => {
    const h = harness({ pollMs: 10_000 });
    await h.settle();
    h.content = 'a: 2\n';
    h.event();
    h.watcher.close();
    await h.advance(60_000);
    expect(h.reloads).toEqual([]);
    expect(() => h.event()).toThrow('not watching');
  });
});
