// CPU time of a system under test: utime + stime of every process of its process group, read from
// /proc/<pid>/stat. Each system is started in a process group of its own (lib/proc.js), so the
// group holds the gateway and its workers, nginx's master and workers, and nothing else.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/**
 * @typedef {object} ProcStat
 * @property {number} pid
 * @property {number} pgrp
 * @property {number} utime  clock ticks, all threads of the process
 * @property {number} stime  clock ticks, all threads of the process
 */

/**
 * Parses one /proc/<pid>/stat line. The command name (field 2) is in parentheses and may hold
 * spaces and parentheses itself, so the fields are counted from the last ')'.
 * @param {string} text
 * @returns {ProcStat | null}  null when the text is not a stat line
 */
export function parseProcStat(text) {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  const pid = Number(text.slice(0, open).trim());
  // after ')': state(3) ppid(4) pgrp(5) session(6) tty_nr(7) tpgid(8) flags(9) minflt(10)
  // cminflt(11) majflt(12) cmajflt(13) utime(14) stime(15)
  const rest = text
    .slice(close + 1)
    .trim()
    .split(/\s+/);
  const pgrp = Number(rest[2]);
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (![pid, pgrp, utime, stime].every(Number.isFinite)) return null;
  return { pid, pgrp, utime, stime };
}

/**
 * Clock ticks per second of /proc's time fields (USER_HZ; 100 on Linux nearly everywhere).
 * @returns {number}
 */
export function clockTicks() {
  const res = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(res.stdout?.trim());
  return Number.isInteger(n) && n > 0 ? n : 100;
}

/**
 * CPU ticks (utime + stime) of every live process in process group `pgid`, by pid. A process that
 * ends between two readings takes its ticks with it; the systems measured here keep theirs for the
 * whole run.
 * @param {number} pgid
 * @param {string} [procDir]
 * @returns {Map<number, number>}
 */
export function groupTicks(pgid, procDir = '/proc') {
  /** @type {Map<number, number>} */
  const ticks = new Map();
  for (const entry of readdirSync(procDir)) {
    if (!/^\d+$/.test(entry)) continue;
    let text;
    try {
      text = readFileSync(`${procDir}/${entry}/stat`, 'utf8');
    } catch {
      continue; // ended meanwhile
    }
    const stat = parseProcStat(text);
    if (stat && stat.pgrp === pgid) ticks.set(stat.pid, stat.utime + stat.stime);
  }
  return ticks;
}

/**
 * Ticks used between two readings of groupTicks: a pid present only in `after` counts from zero.
 * @param {Map<number, number>} before
 * @param {Map<number, number>} after
 * @returns {number}
 */
export function ticksBetween(before, after) {
  let sum = 0;
  for (const [pid, t] of after) sum += t - (before.get(pid) ?? 0);
  return sum;
}

/**
 * CPU microseconds per request: `ticks` at `hz` ticks per second over `requests` completed.
 * @param {number} ticks
 * @param {number} requests
 * @param {number} hz
 * @returns {number}  NaN without requests
 */
export function cpuPerRequestUs(ticks, requests, hz) {
  if (!(requests > 0) || !Number.isFinite(ticks)) return Number.NaN;
  return (ticks / hz / requests) * 1e6;
}

/** @type {number | undefined} */
let hzOnce;

/**
 * utime + stime of every live process in group `pgid` now, in µs (a counter: subtract two readings).
 * @param {number} pgid
 * @returns {number}
 */
export function groupCpuUs(pgid) {
  hzOnce ??= clockTicks();
  let ticks = 0;
  for (const t of groupTicks(pgid).values()) ticks += t;
  return (ticks * 1e6) / hzOnce;
}
