/**
 * Running the multi-process gateway (`workers: N`) from a test (workers-*.test.ts): one group per
 * test, on ports picked in advance (a replacement worker must come back on them), and what the
 * tests read from it: the workers' log lines, requests on new connections, scrapes.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { get } from 'node:http';
import { connect, type Server } from 'node:net';
import { vi } from 'vitest';
import { freePorts } from './free-port.js';
import { spawnCli, writeTempConfig, type CliProcess } from './process.js';
import type { Upstream } from './upstream.js';

/** What the running test started; `cleanup` (after each test) stops and closes it. */
export const h: { proc?: CliProcess; upstream?: Upstream; blocker?: Server } = {};

export async function cleanup(): Promise<void> {
  const proc = h.proc;
  if (proc && proc.child.exitCode === null && proc.child.signalCode === null) {
    // the whole group: workers too, if the primary is gone or stuck
    try {
      process.kill(-(proc.child.pid as number), 'SIGKILL');
    } catch {
      proc.child.kill('SIGKILL');
    }
    await proc.exited;
  }
  await h.upstream?.close();
  const blocker = h.blocker;
  await new Promise((r) => (blocker ? blocker.close(r) : r(undefined)));
  delete h.proc;
  delete h.upstream;
  delete h.blocker;
}

export type Group = { proc: CliProcess; file: string; port: number; adminPort: number; base: string };

export const config = (o: {
  port: number;
  adminPort: number;
  workers: number;
  path?: string;
  extra?: string;
}) => `
listen: { host: 127.0.0.1, port: ${o.port} }
admin: { host: 127.0.0.1, port: ${o.adminPort} }
workers: ${o.workers}
# the tests edit the file to see what a reload (SIGHUP, POST /reload) or a replacement worker does
configWatch: false
logging: { level: info }
services:
  echo: { targets: ["${h.upstream?.url ?? 'http://127.0.0.1:1'}"] }
routes:
  - { name: main, match: { path: "${o.path ?? '/**'}" }, service: echo }
${o.extra ?? ''}`;

/** Lines of `proc`'s output matching `re` (global). */
export const lines = (p: CliProcess, re: RegExp) => [...p.output().matchAll(re)];
export const READY = /"pid":(\d+),(?:"worker":true,)?[^\n]*"msg":"gatehouse ready"/g;
export const readyPids = (p: CliProcess) => lines(p, READY).map((m) => Number(m[1]));

export async function until(check: () => boolean | Promise<boolean>, timeout = 20_000, what = 'condition') {
  await vi.waitFor(
    async () => {
      if (!(await check())) throw new Error(`waiting for ${what}; output:\n${h.proc?.output() ?? ''}`);
    },
    { timeout, interval: 25 },
  );
}

/** Starts `workers` workers and waits until each has said "gatehouse ready". */
export async function startGroup(
  workers: number,
  o: { path?: string; extra?: string; detached?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<Group> {
  const [port, adminPort] = (await freePorts(2)) as [number, number];
  const base = config({ port, adminPort, workers, ...o });
  const file = writeTempConfig(base);
  // no accept grace unless a test asks for one (`auto` would be 5 s in a Kubernetes pod)
  const proc = spawnCli(
    ['start', '-c', file],
    { LOG_LEVEL: 'info', KUBERNETES_SERVICE_HOST: '', ...o.env },
    o,
  );
  h.proc = proc;
  await until(() => new Set(readyPids(proc)).size >= workers, 30_000, `${workers} workers`);
  return { proc, file, port, adminPort, base };
}

/** One request on a new connection: the status, or what went wrong. */
export function request(url: string, timeoutMs = 5000): Promise<number | string> {
  return new Promise((resolve) => {
    const req = get(url, { agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', (err) => resolve(`error ${err.message}`));
    });
    req.on('timeout', () => {
      req.destroy();
      resolve('timeout');
    });
    req.on('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code ?? err.message}`));
  });
}

export async function statuses(url: string, n: number): Promise<Array<number | string>> {
  const out: Array<number | string> = [];
  for (let i = 0; i < n; i++) out.push(await request(url));
  return out;
}

export const tally = (xs: Array<number | string>) =>
  xs.reduce<Record<string, number>>((acc, x) => ({ ...acc, [String(x)]: (acc[String(x)] ?? 0) + 1 }), {});

/** `/metrics` on a new connection (one kept alive to a worker that was then killed is reset). */
export function scrape(g: Group, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = get(
      `http://127.0.0.1:${g.adminPort}/metrics`,
      { agent: false, timeout: timeoutMs },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () =>
          res.statusCode === 200 ? resolve(body) : reject(new Error(`status ${res.statusCode}`)),
        );
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/** The sum of every sample of `name` (all label sets). */
export function total(text: string, name: string): number {
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) sum += Number(m[1]);
  return sum;
}

/** The pids of `parent`'s children (from /proc). */
export function childPids(parent: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // pid (comm) state ppid ...: comm may hold spaces and parentheses, so read after the last ')'
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === parent) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Whether the process has a handler for SIGHUP (bit 0 of SigCgt in /proc/<pid>/status). */
export function catchesSighup(pid: number): boolean {
  try {
    const m = /^SigCgt:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m !== null && (BigInt(`0x${m[1]}`) & 1n) === 1n;
  } catch {
    return false;
  }
}

export const portRefuses = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
