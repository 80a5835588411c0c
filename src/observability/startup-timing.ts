/**
 * Where a start's time goes, phase by phase: with GATEHOUSE_STARTUP_TIMING set (to anything but
 * empty or `0`), each mark is a line on stderr, `gatehouse startup: <ms since the process began>
 * +<ms since the previous mark> <phase>`. Off by default: a mark is then one boolean test. The
 * clock is `performance.now()`, which counts from Node's own start, so the first mark includes
 * Node's boot (given on its own line). No imports but a built-in: the CLI marks before it loads
 * anything else.
 */
import { performance } from 'node:perf_hooks';

const env = process.env.GATEHOUSE_STARTUP_TIMING;
const on = env !== undefined && env !== '' && env !== '0';
let last = 0;

function write(phase: string, at: number, since: number): void {
  process.stderr.write(
    `gatehouse startup: ${at.toFixed(1).padStart(7)} ms ${`+${since.toFixed(1)}`.padStart(8)} ms  ${phase}\n`,
  );
}

/** Marks the end of a phase of start-up. */
export function startupMark(phase: string): void {
  if (!on) return;
  if (last === 0) {
    const boot = performance.nodeTiming.bootstrapComplete;
    write('node bootstrap complete', boot, boot);
    last = boot;
  }
  const now = performance.now();
  write(phase, now, now - last);
  last = now;
}

/**
 * `work`, marked when it settles, with how long it took itself (start-up waits run side by side:
 * the time since the previous mark says little about each).
 */
export function startupTimed<T>(phase: string, work: Promise<T>): Promise<T> {
  if (!on) return work;
  const begun = performance.now();
  const done = () => {
    const now = performance.now();
    write(`${phase} (took ${(now - begun).toFixed(1)} ms)`, now, now - last);
    last = now;
  };
  work.then(done, done);
  return work;
}
