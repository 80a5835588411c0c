// Child processes, CPU pinning and temporary directories, with cleanup on every kind of exit.
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** @type {Set<ProcessHandle>} */
const children = new Set();
/** @type {Set<string>} */
const tempDirs = new Set();
let hooksInstalled = false;

/** Kills every child still running (its whole process group) and removes the temporary directories. */
export function cleanupSync() {
  for (const handle of children) handle.kill('SIGKILL');
  children.clear();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

/**
 * Makes sure children are killed on normal exit, on an uncaught error (Node emits 'exit' then too)
 * and on SIGINT / SIGTERM / SIGHUP.
 */
export function installCleanupHooks() {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', cleanupSync);
  const signals = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 };
  for (const [signal, number] of Object.entries(signals)) {
    process.on(signal, () => {
      console.error(`\n${signal} received: stopping child processes`);
      cleanupSync();
      process.exit(128 + number);
    });
  }
}

/**
 * Creates a temporary directory that is removed on exit.
 * @param {string} prefix
 */
export function makeTempDir(prefix = 'gatehouse-bench-') {
  installCleanupHooks();
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

/**
 * Full path of an executable, looking in PATH and in the sbin directories (nginx lives in /usr/sbin).
 * @param {string} name
 * @returns {string | null}
 */
export function which(name) {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

/**
 * Pins every thread of the current process to one CPU (threads created later inherit it).
 * @param {number} cpu
 */
export function pinSelf(cpu) {
  const res = spawnSync('taskset', ['-a', '-p', '-c', String(cpu), String(process.pid)], {
    encoding: 'utf8',
  });
  if (res.status !== 0) console.warn(`warning: could not pin the runner to CPU ${cpu}: ${res.stderr.trim()}`);
}

/**
 * @typedef {object} ProcessHandle
 * @property {string} name
 * @property {import('node:child_process').ChildProcess} child
 * @property {Promise<{ code: number | null, signal: string | null }>} exited
 * @property {() => boolean} running
 * @property {() => string} output  the last few KB of stdout and stderr
 * @property {() => string} stdout  everything written to stdout (when `collect` was set)
 * @property {(signal?: NodeJS.Signals) => void} kill  signals the whole process group
 * @property {(graceMs?: number) => Promise<void>} stop  SIGTERM, then SIGKILL after graceMs
 */

/**
 * Starts a child process in its own process group, optionally pinned to one CPU with taskset.
 * The child is killed when the runner exits, whatever the reason.
 * @param {object} opts
 * @param {string} opts.name  label used in messages
 * @param {string} opts.cmd
 * @param {string[]} [opts.args]
 * @param {number | string | null} [opts.cpu]  CPU (or taskset list, e.g. '0,1') to pin to; null or
 *   undefined: no pinning
 * @param {Record<string, string | undefined>} [opts.env]  added to process.env
 * @param {string} [opts.cwd]
 * @param {boolean} [opts.collect]  keep the whole stdout (for wrk), not only its tail
 * @returns {ProcessHandle}
 */
export function spawnProcess({ name, cmd, args = [], cpu = null, env = {}, cwd, collect = false }) {
  installCleanupHooks();
  const [file, argv] = cpu === null ? [cmd, args] : ['taskset', ['-c', String(cpu), cmd, ...args]];
  const child = spawn(file, argv, {
    cwd,
    env: { ...process.env, ...env },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let tail = '';
  let out = '';
  const append = (/** @type {Buffer} */ chunk) => {
    tail = (tail + chunk.toString()).slice(-8192);
  };
  child.stdout?.on('data', (chunk) => {
    if (collect) out += chunk.toString();
    append(chunk);
  });
  child.stderr?.on('data', append);

  let done = false;
  /** @type {Promise<{ code: number | null, signal: string | null }>} */
  const exited = new Promise((resolve) => {
    child.on('error', (err) => {
      append(Buffer.from(`${err.message}\n`));
      done = true;
      children.delete(handle);
      resolve({ code: -1, signal: null });
    });
    child.on('close', (code, signal) => {
      done = true;
      children.delete(handle);
      resolve({ code, signal });
    });
  });

  /** @type {ProcessHandle} */
  const handle = {
    name,
    child,
    exited,
    running: () => !done,
    output: () => tail,
    stdout: () => out,
    kill(signal = 'SIGTERM') {
      if (done || child.pid === undefined) return;
      try {
        process.kill(-child.pid, signal);
      } catch {
        // already gone
      }
    },
    async stop(graceMs = 5000) {
      if (done) return;
      handle.kill('SIGTERM');
      const timer = setTimeout(() => handle.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  children.add(handle);
  return handle;
}

/**
 * Runs a command to completion (synchronously) and returns its combined output.
 * @param {string} cmd
 * @param {string[]} args
 */
export function runSync(cmd, args) {
  const res = spawnSync(cmd, args, { encoding: 'utf8' });
  return { status: res.status, output: `${res.stdout ?? ''}${res.stderr ?? ''}`.trim() };
}

/** @returns {{ busy: number, total: number } | null} */
function readCpuTimes() {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
    const fields = line.trim().split(/\s+/).slice(1).map(Number);
    const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
    return { busy: total - idle, total };
  } catch {
    return null;
  }
}

/**
 * Share of the machine's CPU time (0..1, over all CPUs) that was busy during `ms`: a benchmark should
 * start on an idle machine. Null where /proc/stat cannot be read.
 * @param {number} [ms]
 * @returns {Promise<number | null>}
 */
export async function sampleCpuBusy(ms = 1000) {
  const before = readCpuTimes();
  await new Promise((resolve) => setTimeout(resolve, ms));
  const after = readCpuTimes();
  if (!before || !after || after.total === before.total) return null;
  return (after.busy - before.busy) / (after.total - before.total);
}
