/**
 * `configWatch`: the config file follows its file on disk. The file's *directory* is watched, not
 * the file: a Kubernetes ConfigMap volume replaces its content by renaming a `..data` symlink
 * (`gatehouse.yaml -> ..data/gatehouse.yaml`, `..data -> ..2026_01_01_00_00_00.123`), which never
 * touches the `gatehouse.yaml` entry itself, and editors that save by rename replace the file's
 * inode. Every event in the directory (re)starts a short debounce; when it ends the file is read
 * and hashed, and only content that differs from the last content seen asks for a reload. So a
 * burst of events is one reload, a touch or a re-read of the same bytes is none, and an invalid
 * file is tried (and its problems logged and counted by the reload) once, not once per event.
 *
 * A periodic check (`pollMs`) covers what inotify cannot see (network filesystems, a watch that
 * could not be set up, such as when the node's inotify watches are used up): it costs one small
 * read, and does nothing while the content is unchanged.
 */
import { createHash } from 'node:crypto';
import { watch as fsWatch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../observability/logger.js';

export type ConfigWatchOptions = {
  logger: Logger;
  /** asks for a reload; the next check waits until it is done */
  reload: () => Promise<unknown> | void;
  /** quiet time after the last event before the file is read (default 200 ms) */
  debounceMs?: number;
  /** a check without any event, for filesystems that send none (default 10 s; 0 = never) */
  pollMs?: number;
  /** for tests: the file system and the clock */
  io?: Partial<WatchIo>;
};

export type WatchIo = {
  watchDir(dir: string, onEvent: () => void, onError: (err: Error) => void): { close(): void };
  read(file: string): Promise<Buffer>;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
};

export type ConfigWatcher = {
  /** stops watching; a reload already asked for still runs */
  close(): void;
  /** resolves once no check is pending or running (for tests) */
  idle(): Promise<void>;
};

export const DEFAULT_DEBOUNCE_MS = 200;
export const DEFAULT_POLL_MS = 10_000;
/** how long to wait before trying again to watch a directory whose watch failed */
const REARM_MS = 1000;

const realIo: WatchIo = {
  watchDir(dir, onEvent, onError) {
    const watcher: FSWatcher = fsWatch(dir, { persistent: false }, () => onEvent());
    watcher.on('error', onError);
    return watcher;
  },
  read: (file) => readFile(file),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
  setInterval: (fn, ms) => setInterval(fn, ms).unref(),
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
};

/**
 * What the file holds, as a hash: its bytes, or the reason it cannot be read (a file that is gone
 * is a change too, reported once by the reload like any other problem).
 */
export async function contentHash(read: WatchIo['read'], file: string): Promise<string> {
  try {
    return (
      'sha256:' +
      createHash('sha256')
        .update(await read(file))
        .digest('hex')
    );
  } catch (err) {
    return `unreadable:${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
  }
}

export function watchConfigFile(file: string, options: ConfigWatchOptions): ConfigWatcher {
  const io: WatchIo = { ...realIo, ...options.io };
  const { logger } = options;
  const debounceMs = options.debounceMs ?? DEFAULT_DEBOUNCE_MS;
  const pollMs = options.pollMs ?? DEFAULT_POLL_MS;
  const dir = dirname(file);

  let closed = false;
  let watcher: { close(): void } | null = null;
  let debounce: unknown = null;
  let rearm: unknown = null;
  /** a check is running; `again` asks for another one when it is done */
  let running: Promise<void> | null = null;
  let again = false;
  // The content the running config was loaded from: read now, just after the start loaded it.
  // (A change in the few milliseconds between that load and this read would go unnoticed until
  // the next change; the window is the start-up itself.)
  let seen: Promise<string> | string = contentHash(io.read, file);

  const check = async (): Promise<void> => {
    const before = await seen;
    const now = await contentHash(io.read, file);
    if (closed || now === before) return;
    seen = now;
    logger.info({ file, trigger: 'watch' }, 'config file changed; reloading');
    await options.reload();
  };

  const run = (): void => {
    if (closed) return;
    if (running) {
      again = true;
      return;
    }
    running = check()
      .catch((err: unknown) => logger.error({ err, file }, 'config watch: check failed'))
      .finally(() => {
        running = null;
        if (again) {
          again = false;
          run();
        }
      });
  };

  const onEvent = (): void => {
    if (closed) return;
    if (debounce !== null) io.clearTimeout(debounce);
    debounce = io.setTimeout(() => {
      debounce = null;
      run();
    }, debounceMs);
  };

  let warned = false;
  const arm = (): void => {
    rearm = null;
    if (closed) return;
    try {
      watcher = io.watchDir(dir, onEvent, (err) => {
        // the directory went away or the watch broke: watch again, and look at the file then
        logger.warn({ err, dir }, 'config watch: the directory watch failed; watching it again');
        watcher?.close();
        watcher = null;
        if (!closed) rearm = io.setTimeout(rearmAndCheck, REARM_MS);
      });
      warned = false;
    } catch (err) {
      // ENOSPC (the node's inotify watches are used up), EACCES, ...: the periodic check still
      // sees changes; the watch is tried again now and then
      if (!warned) logger.warn({ err, dir, pollMs }, 'config watch: cannot watch the directory');
      warned = true;
      watcher = null;
      rearm = io.setTimeout(rearmAndCheck, REARM_MS * 5);
    }
  };
  const rearmAndCheck = (): void => {
    arm();
    run();
  };
  arm();
  const poll = pollMs > 0 ? io.setInterval(run, pollMs) : null;
  logger.debug({ file, dir, debounceMs, pollMs }, 'watching the config file');

  return {
    close() {
      if (closed) return;
      closed = true;
      watcher?.close();
      watcher = null;
      if (debounce !== null) io.clearTimeout(debounce);
      if (rearm !== null) io.clearTimeout(rearm);
      if (poll !== null) io.clearInterval(poll);
    },
    async idle() {
      await seen;
      while (running) await running;
    },
  };
}
