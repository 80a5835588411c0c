/** Runs the real CLI (`bin/gatehouse.js`, built by `npm test` before the suite) in a child process. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

export const repoRoot = resolve(import.meta.dirname, '..', '..');

export function writeTempConfig(yaml: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-test-'));
  const file = join(dir, 'gatehouse.yaml');
  writeFileSync(file, yaml);
  return file;
}

export type CliProcess = {
  child: ChildProcess;
  output(): string;
  /** resolves with the exit code (or the signal name) */
  exited: Promise<number | string>;
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
};

/** Children still running: killed when the test process exits, so a test that forgets one (or
 *  fails before its cleanup) never leaves a gateway, or a primary and its workers, behind. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL'); // its group, if it leads one
    } catch {
      // not a group leader
    }
    child.kill('SIGKILL');
  }
});

/**
 * `detached`: the child leads a process group of its own (its pid is the group id), so that a
 * test can signal the whole group as systemd does (`process.kill(-pid, signal)`).
 */
export function spawnCli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  options: { detached?: boolean } = {},
): CliProcess {
  const child = spawn(process.execPath, ['bin/gatehouse.js', ...args], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.detached ?? false,
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  let out = '';
  const waiters: Array<() => void> = [];
  const onData = (d: Buffer) => {
    out += d.toString();
    for (const w of waiters.splice(0)) w();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | string>((res) =>
    child.on('exit', (code, signal) => res(code ?? signal ?? -1)),
  );
  return {
    child,
    output: () => out,
    exited,
    waitFor(pattern, timeoutMs = 10_000) {
      return new Promise((res, rej) => {
        const timer = setTimeout(
          () => rej(new Error(`timed out waiting for ${pattern}; output:\n${out}`)),
          timeoutMs,
        );
        const check = () => {
          const m = pattern.exec(out);
          if (m) {
            clearTimeout(timer);
            res(m);
          } else waiters.push(check);
        };
        void exited.then(() => {
          if (!pattern.exec(out)) {
            clearTimeout(timer);
            rej(new Error(`process exited before ${pattern}; output:\n${out}`));
          }
        });
        check();
      });
    },
  };
}

/** SIGTERM, SIGKILL after 5 s; resolved once the process has exited (at once if it had). */
export async function stopProcess(proc: CliProcess): Promise<void> {
  if (proc.child.exitCode !== null || proc.child.signalCode !== null) return;
  proc.child.kill('SIGTERM');
  const timer = setTimeout(() => proc.child.kill('SIGKILL'), 5000);
  await proc.exited;
  clearTimeout(timer);
}
