// What /proc says about one process: its resident memory and its open sockets. Linux only.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

/**
 * Resident set size in MB (VmRSS), or null when the process is gone.
 * @param {number} pid
 */
export function rssMb(pid) {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/**
 * Open file descriptors of the process that are sockets (listening, client, upstream, Redis,
 * sinks alike), or null when the process is gone.
 * @param {number} pid
 */
export function socketCount(pid) {
  let names;
  try {
    names = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return null;
  }
  let n = 0;
  for (const fd of names) {
    try {
      if (readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:')) n++;
    } catch {
      // closed between the listing and the readlink
    }
  }
  return n;
}

/**
 * The process's direct children (to find a worker a supervisor forked), from the children files of /proc/<pid>/task.
 * @param {number} pid
 * @returns {number[]}
 */
export function childrenOf(pid) {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((tid) =>
      readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8')
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map(Number),
    );
  } catch {
    return [];
  }
}
