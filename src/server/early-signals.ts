/**
 * A cluster worker takes a while to load the gateway's code before its signal handlers are in
 * place, and a signal without a handler takes its default action: a SIGHUP or SIGTERM sent to
 * the whole process group (a terminal hang-up, `kill -TERM -- -<pgid>`) would end a starting
 * worker. `bin/gatehouse.js` calls `holdSignals()` first thing, before it loads the CLI; the
 * worker takes the held signals over once its own handlers are installed. No imports here but a
 * built-in: this module must load at once. Other processes (a single gateway, the primary, the
 * other commands) keep the default actions until they install their own handlers.
 */
import cluster from 'node:cluster';

const HELD = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;
const seen: NodeJS.Signals[] = [];
const record = (signal: NodeJS.Signals): void => {
  seen.push(signal);
};

export function holdSignals(): void {
  if (!cluster.isWorker) return;
  for (const s of HELD) process.on(s, record);
}

/** Stops holding (call after installing the real handlers); returns the signals seen meanwhile. */
export function releaseSignals(): NodeJS.Signals[] {
  for (const s of HELD) process.off(s, record);
  return seen.splice(0);
}
