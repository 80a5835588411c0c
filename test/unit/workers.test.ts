/**
 * The pure parts of multi-process mode: `workers: auto` from the cgroup CPU limit (read from
 * fixture trees laid out like /sys/fs/cgroup), the restart policy, the accept grace, the sums
 * the primary keeps for workers that are gone, and the IPC calls between primary and workers.
 */
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.js';
import { formatProblem } from '../../src/config/problems.js';
import { addReports, PrimaryMetrics, type MetricsReport } from '../../src/server/cluster-metrics.js';
import {
  autoWorkerCount,
  cgroupCpuLimit,
  parseCfsQuota,
  parseCpuMax,
  readCgroupCpuLimit,
} from '../../src/server/cpu-limit.js';
import { acceptGraceMs } from '../../src/server/gateway.js';
import { IpcClosedError, IpcPeer } from '../../src/server/ipc.js';
import { RestartPolicy } from '../../src/server/restart-policy.js';

const fixture = (name: string) => fileURLToPath(new URL(`../fixtures/cgroup/${name}`, import.meta.url));
const limitOf = (name: string) => readCgroupCpuLimit(`${fixture(name)}/fs`, `${fixture(name)}/self`);

describe('workers: auto follows the cgroup CPU limit', () => {
  it('parses cpu.max (v2) and the CFS quota (v1)', () => {
    expect(parseCpuMax('200000 100000\n')).toBe(2);
    expect(parseCpuMax('150000 100000')).toBe(1.5);
    expect(parseCpuMax('max 100000')).toBeNull();
    expect(parseCpuMax('50000')).toBe(0.5); // period left out: the kernel's default 100 ms
    expect(parseCpuMax('')).toBeNull();
    expect(parseCfsQuota('-1', '100000')).toBeNull();
    expect(parseCfsQuota('25000\n', '100000\n')).toBe(0.25);
    expect(parseCfsQuota('garbage', '100000')).toBeNull();
  });

  it('reads the limit of a pod whose cgroup is the root of its namespace (v2)', () => {
    expect(limitOf('v2-pod')).toBe(2.5);
    expect(autoWorkerCount(limitOf('v2-pod'), 64)).toBe(3); // rounded up
  });

  it('takes the smallest limit from the process cgroup up to the root (v2, no namespace)', () => {
    expect(limitOf('v2-nested')).toBe(1.5);
    expect(autoWorkerCount(limitOf('v2-nested'), 64)).toBe(2);
  });

  it('reads the v1 quota from a cpu,cpuacct mount whose root is the container', () => {
    // /proc/self/cgroup names /docker/<id>, which is the mount's root inside the container
    expect(limitOf('v1-docker')).toBe(0.5);
    expect(autoWorkerCount(limitOf('v1-docker'), 64)).toBe(1); // at least one
  });

  it('no limit (max, -1, no files): one worker per core', () => {
    for (const name of ['v2-unlimited', 'v1-unlimited', 'none']) {
      expect(limitOf(name)).toBeNull();
      expect(autoWorkerCount(limitOf(name), 8)).toBe(8);
    }
  });

  it('never more workers than cores, never fewer than one', () => {
    expect(autoWorkerCount(64, 4)).toBe(4);
    expect(autoWorkerCount(0.01, 4)).toBe(1);
    expect(autoWorkerCount(3.0, 4)).toBe(3);
  });

  it('a hybrid host (v1 cpu controller, v2 without it) uses the v1 quota', () => {
    const files: Record<string, string> = {
      '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '300000',
      '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000',
    };
    expect(cgroupCpuLimit((p) => files[p] ?? null, '1:cpu:/\n0::/\n')).toBe(3);
  });
});

describe('restart policy', () => {
  it('doubles the delay with each crash in the window, then gives up', () => {
    const policy = new RestartPolicy({ baseDelayMs: 100, maxDelayMs: 1000, maxCrashes: 5, windowMs: 60_000 });
    const delays = [0, 10, 20, 30, 40].map((t) => policy.crashed(t));
    expect(delays.map((d) => (d.restart ? d.delayMs : null))).toEqual([100, 200, 400, 800, 1000]);
    expect(policy.crashed(50)).toEqual({ restart: false, recentCrashes: 6 });
  });

  it('forgets crashes older than the window', () => {
    const policy = new RestartPolicy({ baseDelayMs: 100, maxDelayMs: 5000, maxCrashes: 2, windowMs: 1000 });
    expect(policy.crashed(0)).toMatchObject({ restart: true, delayMs: 100 });
    expect(policy.crashed(500)).toMatchObject({ restart: true, delayMs: 200 });
    expect(policy.crashed(1200)).toMatchObject({ restart: true, delayMs: 200, recentCrashes: 2 });
    expect(policy.crashed(5000)).toMatchObject({ restart: true, delayMs: 100, recentCrashes: 1 });
  });

  it('a clean exit is replaced after the base delay and is not a crash', () => {
    const policy = new RestartPolicy({ baseDelayMs: 100, maxDelayMs: 5000, maxCrashes: 1, windowMs: 1000 });
    expect(policy.exited()).toBe(100);
    expect(policy.exited()).toBe(100);
    expect(policy.crashed(0)).toMatchObject({ restart: true, delayMs: 100 });
  });
});

describe('shutdown.acceptGrace', () => {
  const load = (yaml: string) => {
    const r = loadConfigText(yaml, 'gw.yaml', { env: {} });
    if (!r.ok) throw new Error(r.problems.map(formatProblem).join('\n'));
    return r.config.shutdown;
  };

  it('defaults to auto: 5 s in a Kubernetes pod, 0 elsewhere', () => {
    const { acceptGrace } = load('');
    expect(acceptGrace).toBe('auto');
    expect(acceptGraceMs(acceptGrace, { KUBERNETES_SERVICE_HOST: '10.96.0.1' })).toBe(5000);
    expect(acceptGraceMs(acceptGrace, {})).toBe(0);
  });

  it('takes a duration or milliseconds, whatever the environment', () => {
    expect(load('shutdown: { acceptGrace: 2s }').acceptGrace).toBe(2000);
    expect(load('shutdown: { acceptGrace: 0 }').acceptGrace).toBe(0);
    expect(acceptGraceMs(1500, { KUBERNETES_SERVICE_HOST: '10.96.0.1' })).toBe(1500);
  });

  it('refuses anything else, naming the field', () => {
    const r = loadConfigText('shutdown: { acceptGrace: soon }\n', 'gw.yaml', { env: {} });
    expect(r.ok).toBe(false);
    expect(r.ok ? [] : r.problems.map(formatProblem)).toEqual([
      'gw.yaml:1:13: shutdown.acceptGrace: must be "auto" (5s in a Kubernetes pod, else 0), a duration such as "5s" or "500ms" (at most 24 days), or a number of milliseconds',
    ]);
  });
});

const counter = (name: string, values: Array<[Record<string, string>, number]>): MetricsReport[number] =>
  ({
    name,
    help: name,
    type: 'counter',
    aggregator: 'sum',
    values: values.map(([labels, value]) => ({ labels, value })),
  }) as unknown as MetricsReport[number];

describe('the primary keeps what dead workers counted', () => {
  it('adds counters sample by sample, and leaves gauges and non-summed metrics out', () => {
    const gauge = { ...counter('g', [[{}, 7]]), type: 'gauge' } as unknown as MetricsReport[number];
    const first = { ...counter('b', [[{}, 1]]), aggregator: 'first' } as unknown as MetricsReport[number];
    const a = addReports([], [counter('c', [[{ s: '200' }, 3]]), gauge, first]);
    const b = addReports(a, [
      counter('c', [
        [{ s: '200' }, 2],
        [{ s: '404' }, 1],
      ]),
    ]);
    expect(b).toEqual([
      counter('c', [
        [{ s: '200' }, 5],
        [{ s: '404' }, 1],
      ]),
    ]);
    expect(a).toEqual([counter('c', [[{ s: '200' }, 3]])]); // not changed in place
  });

  it('the total counts a retired worker once, beside the live ones and its own counters', async () => {
    const m = new PrimaryMetrics();
    m.workerRestarts.inc({ reason: 'crash' });
    m.retire([counter('gatehouse_requests_total', [[{ route: 'r' }, 4]])]);
    const text = await m.text([[counter('gatehouse_requests_total', [[{ route: 'r' }, 6]])]]);
    expect(text).toContain('gatehouse_requests_total{route="r"} 10');
    expect(text).toContain('gatehouse_worker_restarts_total{reason="crash"} 1');
    expect(text).toContain('gatehouse_config_reloads_total{result="success"} 0');
  });
});

describe('IPC calls between primary and worker', () => {
  const pair = () => {
    const a: IpcPeer = new IpcPeer((msg) => (setImmediate(() => b.receive(structuredClone(msg))), true));
    const b: IpcPeer = new IpcPeer((msg) => (setImmediate(() => a.receive(structuredClone(msg))), true));
    return { a, b };
  };

  it('answers calls, passes rejections on, delivers notices, ignores foreign messages', async () => {
    const { a, b } = pair();
    b.handle('add', (p) => (p as number[]).reduce((x, y) => x + y, 0));
    b.handle('fail', () => Promise.reject(new Error('nope')));
    const seen: unknown[] = [];
    b.on('hi', (p) => seen.push(p));
    expect(await a.call('add', [1, 2, 3], 1000)).toBe(6);
    await expect(a.call('fail', null, 1000)).rejects.toThrow('nope');
    await expect(a.call('missing', null, 1000)).rejects.toThrow('no handler for missing');
    a.notify('hi', { x: 1 });
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(seen).toEqual([{ x: 1 }]);
    expect(b.receive({ cmd: 'NODE_CLUSTER' })).toBe(false);
  });

  it('a closed channel rejects what is pending and what comes after', async () => {
    const a = new IpcPeer(() => true); // nobody answers
    const pending = a.call('x', null, 60_000);
    a.close();
    await expect(pending).rejects.toBeInstanceOf(IpcClosedError);
    await expect(a.call('y', null, 60_000)).rejects.toBeInstanceOf(IpcClosedError);
    expect(a.notify('z')).toBe(false);
  });
});
