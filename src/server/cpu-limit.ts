/**
 * How many CPUs this process may use, for `workers: auto`. In a container the node's core count
 * (`os.availableParallelism()`) is not the answer: a pod limited to 2 CPUs on a 64-core node
 * would fork 64 workers, each throttled. The limit is the cgroup's CPU quota: `cpu.max`
 * ("<quota> <period>" or "max <period>") on cgroup v2, `cpu.cfs_quota_us` / `cpu.cfs_period_us`
 * (quota -1 = none) on v1. A quota may be set on any ancestor of the process's cgroup, so the
 * files are read from the process's cgroup (per /proc/self/cgroup) up to the hierarchy's root and
 * the smallest limit wins. Inside a container the hierarchy's root usually is the container's own
 * cgroup (a cgroup namespace, or a bind mount of the subtree); a path that does not exist under
 * the mount is skipped.
 *
 * The parsing is pure; `readCgroupCpuLimit` is the thin shell that reads the files (once, at
 * start; synchronously, before anything serves).
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { posix } from 'node:path';

/** `cpu.max`: CPUs as a fraction ("150000 100000" → 1.5), or null for no limit ("max 100000"). */
export function parseCpuMax(text: string): number | null {
  const [quota, period] = text.trim().split(/\s+/);
  if (quota === undefined || quota === 'max') return null;
  return cpus(quota, period ?? '100000');
}

/** cgroup v1: quota and period in µs; a quota of -1 means no limit. */
export function parseCfsQuota(quota: string, period: string): number | null {
  return cpus(quota.trim(), period.trim());
}

function cpus(quota: string, period: string): number | null {
  const q = Number(quota);
  const p = Number(period);
  if (!Number.isFinite(q) || !Number.isFinite(p) || q <= 0 || p <= 0) return null;
  return q / p;
}

/** Reads a file; null when it does not exist or cannot be read. */
export type ReadFile = (path: string) => string | null;

/** `path` and each of its ancestors up to "/": "/a/b" → ["/a/b", "/a", "/"]. */
function selfAndAncestors(path: string): string[] {
  const out: string[] = [];
  let p = posix.normalize(path.startsWith('/') ? path : `/${path}`);
  for (;;) {
    out.push(p);
    if (p === '/') return out;
    p = posix.dirname(p);
  }
}

/** cgroup v1 hierarchies that may hold the cpu controller, as mounted under the root. */
const V1_MOUNTS = ['cpu', 'cpu,cpuacct', 'cpuacct,cpu'];

/**
 * The smallest CPU limit found for the process whose /proc/self/cgroup is `selfCgroup`, with the
 * cgroup filesystem mounted at `root`; null when there is none (or no cgroup filesystem).
 */
export function cgroupCpuLimit(read: ReadFile, selfCgroup: string, root = '/sys/fs/cgroup'): number | null {
  const limits: number[] = [];
  for (const line of selfCgroup.split('\n')) {
    // hierarchy-ID:controller-list:cgroup-path (the path may itself contain ':')
    const m = /^(\d+):([^:]*):(.*)$/.exec(line.trim());
    if (m === null) continue;
    const [, id, controllers, path] = m as unknown as [string, string, string, string];
    if (id === '0' && controllers === '') {
      for (const dir of selfAndAncestors(path)) {
        const text = read(posix.join(root, dir, 'cpu.max'));
        const limit = text === null ? null : parseCpuMax(text);
        if (limit !== null) limits.push(limit);
      }
    } else if (controllers.split(',').includes('cpu')) {
      for (const mount of V1_MOUNTS) {
        for (const dir of selfAndAncestors(path)) {
          const quota = read(posix.join(root, mount, dir, 'cpu.cfs_quota_us'));
          const period = read(posix.join(root, mount, dir, 'cpu.cfs_period_us'));
          const limit = quota === null || period === null ? null : parseCfsQuota(quota, period);
          if (limit !== null) limits.push(limit);
        }
      }
    }
  }
  return limits.length === 0 ? null : Math.min(...limits);
}

/** Workers for `auto`: the CPU limit rounded up, at least 1, at most the CPUs there are. */
export function autoWorkerCount(cpuLimit: number | null, available: number): number {
  if (cpuLimit === null) return available;
  return Math.max(1, Math.min(available, Math.ceil(cpuLimit)));
}

const readOrNull: ReadFile = (path) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
};

/** This process's CPU limit from its cgroup, or null. */
export function readCgroupCpuLimit(
  root = '/sys/fs/cgroup',
  selfCgroupFile = '/proc/self/cgroup',
  read: ReadFile = readOrNull,
): number | null {
  const self = read(selfCgroupFile);
  // no /proc/self/cgroup (not Linux): a cgroup v2 root may still be mounted
  return cgroupCpuLimit(read, self ?? '0::/', root);
}

/** `workers: auto` on this machine. */
export function autoWorkers(): number {
  return autoWorkerCount(readCgroupCpuLimit(), availableParallelism());
}
