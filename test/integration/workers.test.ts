/**
 * Multi-process mode (`workers: N`) through the real CLI: a primary and its node:cluster
 * workers, killed and signalled the way crashes, supervisors and operators do. Each test starts
 * its own group on ports picked in advance (a replacement worker must come back on them).
 */
import { readdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { createServer, connect, type Server } from 'node:net';
import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { freePorts } from '../helpers/free-port.js';
import { makeKey } from '../helpers/jwks.js';
import { metricValue } from '../helpers/observe.js';
import { spawnCli, writeTempConfig, type CliProcess } from '../helpers/process.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

let proc: CliProcess | undefined;
let upstream: Upstream | undefined;
let blocker: Server | undefined;

afterEach(async () => {
  if (proc && proc.child.exitCode === null && proc.child.signalCode === null) {
    // the whole group: workers too, if the primary is gone or stuck
    try {
      process.kill(-(proc.child.pid as number), 'SIGKILL');
    } catch {
      proc.child.kill('SIGKILL');
    }
    await proc.exited;
  }
  await upstream?.close();
  await new Promise((r) => (blocker ? blocker.close(r) : r(undefined)));
  proc = undefined;
  upstream = undefined;
  blocker = undefined;
});

type Group = { proc: CliProcess; file: string; port: number; adminPort: number; base: string };

const config = (o: { port: number; adminPort: number; workers: number; path?: string; extra?: string }) => `
listen: { host: 127.0.0.1, port: ${o.port} }
admin: { host: 127.0.0.1, port: ${o.adminPort} }
workers: ${o.workers}
logging: { level: info }
services:
  echo: { targets: ["${upstream?.url ?? 'http://127.0.0.1:1'}"] }
routes:
  - { name: main, match: { path: "${o.path ?? '/**'}" }, service: echo }
${o.extra ?? ''}`;

/** Lines of `proc`'s output matching `re` (global). */
const lines = (p: CliProcess, re: RegExp) => [...p.output().matchAll(re)];
const READY = /"pid":(\d+),(?:"worker":true,)?[^\n]*"msg":"gatehouse ready"/g;
const readyPids = (p: CliProcess) => lines(p, READY).map((m) => Number(m[1]));

async function until(check: () => boolean | Promise<boolean>, timeout = 20_000, what = 'condition') {
  await vi.waitFor(
    async () => {
      if (!(await check())) throw new Error(`waiting for ${what}; output:\n${proc?.output() ?? ''}`);
    },
    { timeout, interval: 25 },
  );
}

/** Starts `workers` workers and waits until each has said "gatehouse ready". */
async function startGroup(
  workers: number,
  o: { path?: string; extra?: string; detached?: boolean; env?: NodeJS.ProcessEnv } = {},
): Promise<Group> {
  const [port, adminPort] = (await freePorts(2)) as [number, number];
  const base = config({ port, adminPort, workers, ...o });
  const file = writeTempConfig(base);
  // no accept grace unless a test asks for one (`auto` would be 5 s in a Kubernetes pod)
  proc = spawnCli(['start', '-c', file], { LOG_LEVEL: 'info', KUBERNETES_SERVICE_HOST: '', ...o.env }, o);
  await until(() => new Set(readyPids(proc as CliProcess)).size >= workers, 30_000, `${workers} workers`);
  return { proc, file, port, adminPort, base };
}

/** One request on a new connection: the status, or what went wrong. */
function request(url: string, timeoutMs = 5000): Promise<number | string> {
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

async function statuses(url: string, n: number): Promise<Array<number | string>> {
  const out: Array<number | string> = [];
  for (let i = 0; i < n; i++) out.push(await request(url));
  return out;
}

const tally = (xs: Array<number | string>) =>
  xs.reduce<Record<string, number>>((acc, x) => ({ ...acc, [String(x)]: (acc[String(x)] ?? 0) + 1 }), {});

/** `/metrics` on a new connection (one kept alive to a worker that was then killed is reset). */
function scrape(g: Group, timeoutMs = 5000): Promise<string> {
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
function total(text: string, name: string): number {
  let sum = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))) sum += Number(m[1]);
  return sum;
}

/** The pids of `parent`'s children (from /proc). */
function childPids(parent: number): number[] {
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
function catchesSighup(pid: number): boolean {
  try {
    const m = /^SigCgt:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m !== null && (BigInt(`0x${m[1]}`) & 1n) === 1n;
  } catch {
    return false;
  }
}

const portRefuses = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });

describe('multi-process gateway: workers die', () => {
  it('all workers killed at once are replaced; the primary keeps running', { timeout: 60_000 }, async () => {
    upstream = await startUpstream();
    const g = await startGroup(2);
    const first = readyPids(g.proc);
    for (const pid of first) process.kill(pid, 'SIGKILL');
    // the primary must not exit (it did with code 13: its only timer was unref'd)
    await until(
      () => readyPids(g.proc).filter((p) => !first.includes(p)).length >= 2,
      30_000,
      'replacements',
    );
    expect(g.proc.child.exitCode).toBeNull();
    await until(async () => (await request(`http://127.0.0.1:${g.port}/x`)) === 200, 10_000, 'serving');
    expect(tally(await statuses(`http://127.0.0.1:${g.port}/x`, 10))).toEqual({ 200: 10 });
    g.proc.child.kill('SIGTERM');
    expect(await g.proc.exited).toBe(0);
  });

  it('a port already in use: exit code 1, quickly, saying why', { timeout: 30_000 }, async () => {
    const [port, adminPort] = (await freePorts(2)) as [number, number];
    blocker = createServer();
    await new Promise<void>((r) => blocker?.listen(port, '127.0.0.1', r));
    proc = spawnCli(['start', '-c', writeTempConfig(config({ port, adminPort, workers: 2 }))], {
      LOG_LEVEL: 'info',
    });
    const started = performance.now();
    expect(await proc.exited).toBe(1);
    const took = performance.now() - started;
    expect(proc.output()).toContain('EADDRINUSE');
    expect(proc.output()).toMatch(/"level":50[^\n]*a worker could not start; stopping/);
    // bounded by the workers' start-up, not by restarts (a loaded machine: seconds, not minutes)
    expect(took).toBeLessThan(20_000);
  });

  it(
    'SIGTERM right after a worker crash: the stop wins, nothing keeps serving',
    { timeout: 60_000 },
    async () => {
      const held: ServerResponse[] = [];
      upstream = await startUpstream((_req, res) => {
        held.push(res);
      });
      const g = await startGroup(2);
      // requests in flight on both workers: the survivor's drain then outlasts the restart delay
      const inFlight = Array.from({ length: 4 }, () => request(`http://127.0.0.1:${g.port}/slow`, 20_000));
      await until(() => held.length === 4, 10_000, 'requests at the upstream');
      const [victim] = readyPids(g.proc) as [number];
      process.kill(victim, 'SIGKILL');
      await g.proc.waitFor(/worker died/, 10_000);
      g.proc.child.kill('SIGTERM'); // within the restart delay
      await new Promise((r) => setTimeout(r, 600)); // past it
      for (const res of held) res.end('done');
      await Promise.all(inFlight); // those the dead worker had are lost; the others answered
      expect(await g.proc.exited).toBe(0);
      // a replacement forked after the stop began used to serve on, /readyz 200, forever
      expect(await portRefuses(g.port)).toBe(true);
      expect(await portRefuses(g.adminPort)).toBe(true);
    },
  );

  it(
    'restarts back off, and a crash loop stops the primary with exit code 1',
    { timeout: 90_000 },
    async () => {
      upstream = await startUpstream();
      const key = await makeKey('k1');
      const pem = writeTempConfig('').replace(/gatehouse\.yaml$/, 'key.pem');
      writeFileSync(pem, key.publicPem);
      const g = await startGroup(2, {
        extra: `  - { name: jwt, match: { path: /jwt/** }, service: echo, auth: [jwt] }\nauth: { jwt: { publicKeys: ["${pem}"] } }\n`,
      });
      // the key file disappears (a secret rotated badly): no new worker can start
      unlinkSync(pem);
      process.kill(readyPids(g.proc)[0] as number, 'SIGKILL');
      expect(await g.proc.exited).toBe(1);
      const delays = lines(g.proc, /"restartIn":(\d+),"recentCrashes":\d+,"msg":"worker died/g).map((m) =>
        Number(m[1]),
      );
      expect(delays).toEqual([100, 200, 400, 800, 1600]);
      expect(g.proc.output()).toMatch(
        /"recentCrashes":6,"msg":"workers keep crashing; stopping \(crash loop\)"/,
      );
      expect(lines(g.proc, /could not start/g)).toHaveLength(5);
    },
  );

  it(
    'a replacement worker runs the config the others run, not the file as edited since',
    { timeout: 60_000 },
    async () => {
      upstream = await startUpstream();
      const g = await startGroup(2, { path: '/a/**' });
      writeFileSync(g.file, g.base.replace('"/a/**"', '"/b/**"')); // edited, not reloaded
      // replace both workers, one after the other: every worker is then a replacement
      for (const pid of readyPids(g.proc)) {
        const before = readyPids(g.proc).length;
        process.kill(pid, 'SIGKILL');
        await until(() => readyPids(g.proc).length > before, 30_000, 'a replacement');
      }
      await until(
        async () => (await request(`http://127.0.0.1:${g.adminPort}/readyz`)) === 200,
        10_000,
        'ready',
      );
      expect(tally(await statuses(`http://127.0.0.1:${g.port}/a/x`, 20))).toEqual({ 200: 20 });
      expect(tally(await statuses(`http://127.0.0.1:${g.port}/b/x`, 10))).toEqual({ 404: 10 });
    },
  );

  it(
    'a worker crash leaves no client connection hanging (scheduling policy)',
    { timeout: 60_000 },
    async () => {
      upstream = await startUpstream();
      const g = await startGroup(2);
      const results: Array<number | string> = [];
      for (const pid of readyPids(g.proc)) {
        const before = readyPids(g.proc).length;
        process.kill(pid, 'SIGKILL');
        // new connections at once, while the primary has not yet seen the worker go
        results.push(
          ...(await Promise.all(
            Array.from({ length: 10 }, () => request(`http://127.0.0.1:${g.port}/x`, 4000)),
          )),
        );
        await until(() => readyPids(g.proc).length > before, 30_000, 'a replacement');
      }
      expect(tally(results)).toEqual({ 200: 20 });
    },
  );
});

describe('multi-process gateway: signals', () => {
  it(
    'SIGHUP while the workers start (to the primary, then to the whole group) kills nothing',
    { timeout: 60_000 },
    async () => {
      upstream = await startUpstream();
      const [port, adminPort] = (await freePorts(2)) as [number, number];
      proc = spawnCli(
        ['start', '-c', writeTempConfig(config({ port, adminPort, workers: 2 }))],
        { LOG_LEVEL: 'info' },
        { detached: true },
      );
      const pid = proc.child.pid as number;
      await proc.waitFor(/primary started/);
      // To the primary at once (it used to pass SIGHUP on to workers that had no handler yet).
      // To the group once every worker catches SIGHUP: a worker holds it from its first line of
      // code, before it loads the gateway (node's own start-up, before any code runs, cannot).
      let toPrimary = 0;
      let toGroup = 0;
      const hup = setInterval(() => {
        const workers = childPids(pid);
        const group = workers.length === 2 && workers.every(catchesSighup) && toPrimary % 2 === 1;
        try {
          process.kill(group ? -pid : pid, 'SIGHUP');
        } catch {
          return; // the group is gone: the assertions below say why
        }
        if (group && new Set(readyPids(proc as CliProcess)).size < 2) toGroup++;
        else toPrimary++;
      }, 10);
      try {
        await until(() => new Set(readyPids(proc as CliProcess)).size >= 2, 30_000, 'workers up');
      } finally {
        clearInterval(hup);
      }
      expect(toPrimary).toBeGreaterThan(2);
      expect(toGroup).toBeGreaterThan(0);
      expect(proc.output()).not.toMatch(/worker died|could not start/);
      expect(proc.child.exitCode).toBeNull();
      await until(
        async () => (await request(`http://127.0.0.1:${adminPort}/readyz`)) === 200,
        10_000,
        'ready',
      );
      expect(tally(await statuses(`http://127.0.0.1:${port}/x`, 6))).toEqual({ 200: 6 });
      proc.child.kill('SIGTERM');
      expect(await proc.exited).toBe(0);
    },
  );

  it(
    'kill -TERM -- -<pgid> drains: requests in flight are answered, exit 0',
    { timeout: 60_000 },
    async () => {
      const held: ServerResponse[] = [];
      upstream = await startUpstream((_req, res) => {
        held.push(res);
      });
      const g = await startGroup(2, { detached: true });
      const inFlight = Array.from({ length: 6 }, () => request(`http://127.0.0.1:${g.port}/slow`, 20_000));
      await until(() => held.length === 6, 10_000, 'requests at the upstream');
      const group = -(g.proc.child.pid as number);
      process.kill(group, 'SIGTERM'); // the primary and every worker
      await until(() => lines(g.proc, /"msg":"draining"/g).length >= 2, 10_000, 'both workers draining');
      // and again (a supervisor that repeats itself, the primary passing the stop on): a worker's
      // handler must not be used up by the first one
      process.kill(group, 'SIGTERM');
      await new Promise((r) => setTimeout(r, 300));
      for (const res of held) res.end('done');
      expect(tally(await Promise.all(inFlight))).toEqual({ 200: 6 });
      expect(await g.proc.exited).toBe(0);
      expect(lines(g.proc, /"msg":"draining"/g)).toHaveLength(2); // each worker drained once
      expect(g.proc.output()).not.toMatch(/worker died/);
    },
  );
});

describe('one process (workers: 1): signals', () => {
  it('a second SIGTERM does not cut the drain short', { timeout: 30_000 }, async () => {
    const held: ServerResponse[] = [];
    upstream = await startUpstream((_req, res) => {
      held.push(res);
    });
    const g = await startGroup(1);
    const inFlight = request(`http://127.0.0.1:${g.port}/slow`, 20_000);
    await until(() => held.length === 1, 10_000, 'the request at the upstream');
    g.proc.child.kill('SIGTERM');
    await g.proc.waitFor(/"msg":"draining"/, 10_000);
    g.proc.child.kill('SIGTERM'); // it used to take the default action: the process died
    await new Promise((r) => setTimeout(r, 300));
    held[0]?.end('done');
    expect(await inFlight).toBe(200);
    expect(await g.proc.exited).toBe(0);
  });
});

describe('multi-process gateway: one answer for the group', () => {
  it(
    'POST /reload answers once every worker has the new config, counted once',
    { timeout: 60_000 },
    async () => {
      upstream = await startUpstream();
      const g = await startGroup(3, { path: '/a/**' });
      await until(
        async () => (await request(`http://127.0.0.1:${g.adminPort}/readyz`)) === 200,
        10_000,
        'ready',
      );
      writeFileSync(g.file, g.base.replace('"/a/**"', '"/b/**"'));
      const res = await fetch(`http://127.0.0.1:${g.adminPort}/reload`, { method: 'POST' });
      expect(res.status).toBe(200);
      // right after the answer, every worker routes by the new config
      expect(tally(await statuses(`http://127.0.0.1:${g.port}/b/x`, 30))).toEqual({ 200: 30 });
      const text = await scrape(g);
      expect(metricValue(text, 'gatehouse_config_reloads_total', { result: 'success' })).toBe(1);
      expect(metricValue(text, 'gatehouse_config_reloads_total', { result: 'failure' })).toBe(0);
      // an invalid file: refused once, for every worker
      writeFileSync(g.file, g.base.replace('service: echo', 'service: nope'));
      expect((await fetch(`http://127.0.0.1:${g.adminPort}/reload`, { method: 'POST' })).status).toBe(400);
      expect(metricValue(await scrape(g), 'gatehouse_config_reloads_total', { result: 'failure' })).toBe(1);
      expect(tally(await statuses(`http://127.0.0.1:${g.port}/b/x`, 6))).toEqual({ 200: 6 });
    },
  );

  it(
    '/metrics right after a crash: answered at once, sums never drop, restarts counted',
    { timeout: 60_000 },
    async () => {
      upstream = await startUpstream();
      const g = await startGroup(2);
      await until(
        async () => (await request(`http://127.0.0.1:${g.adminPort}/readyz`)) === 200,
        10_000,
        'ready',
      );
      expect(tally(await statuses(`http://127.0.0.1:${g.port}/x`, 20))).toEqual({ 200: 20 });
      const before = total(await scrape(g), 'gatehouse_requests_total');
      expect(before).toBe(20);
      const cpuBefore = total(await scrape(g), 'process_cpu_seconds_total');
      const pids = readyPids(g.proc);
      process.kill(pids[0] as number, 'SIGKILL');
      // scrapes during the restart: each answered within 2.5 s (they took 5 s), none below `before`
      for (let i = 0; i < 5; i++) {
        const text = await scrape(g, 2500);
        expect(total(text, 'gatehouse_requests_total')).toBeGreaterThanOrEqual(before);
      }
      await until(() => readyPids(g.proc).length >= 3, 30_000, 'the replacement');
      await until(
        async () => (await request(`http://127.0.0.1:${g.adminPort}/readyz`)) === 200,
        10_000,
        'ready',
      );
      const after = await scrape(g);
      expect(total(after, 'gatehouse_requests_total')).toBe(20);
      expect(total(after, 'process_cpu_seconds_total')).toBeGreaterThanOrEqual(cpuBefore);
      expect(metricValue(after, 'gatehouse_worker_restarts_total', { reason: 'crash' })).toBe(1);
    },
  );

  it(
    '/readyz is 200 only while every worker is up: not before all have started, not while one is replaced',
    { timeout: 60_000 },
    async () => {
      upstream = await startUpstream();
      const [port, adminPort] = (await freePorts(2)) as [number, number];
      proc = spawnCli(['start', '-c', writeTempConfig(config({ port, adminPort, workers: 3 }))], {
        LOG_LEVEL: 'info',
      });
      const readyz = () => request(`http://127.0.0.1:${adminPort}/readyz`);
      // polled from the moment the admin port answers: at the first 200, every worker is up
      await until(async () => (await readyz()) === 200, 30_000, 'ready');
      await new Promise((r) => setTimeout(r, 20)); // the log lines were written before it
      expect(new Set(readyPids(proc)).size).toBe(3);

      process.kill(readyPids(proc)[0] as number, 'SIGKILL');
      await proc.waitFor(/worker died/, 10_000);
      // the survivors answer for the group: not ready until the replacement is up
      expect(tally(await Promise.all(Array.from({ length: 10 }, readyz)))).toEqual({ 503: 10 });
      await until(() => readyPids(proc as CliProcess).length >= 4, 30_000, 'the replacement');
      await until(async () => (await readyz()) === 200, 10_000, 'ready again');
      expect(tally(await Promise.all(Array.from({ length: 20 }, readyz)))).toEqual({ 200: 20 });
    },
  );

  it(
    '/readyz answers the same on every worker while one drains alone; it is replaced at once, its clean exit logged at info',
    { timeout: 60_000 },
    async () => {
      upstream = await startUpstream();
      const g = await startGroup(3, { extra: 'shutdown: { acceptGrace: 8s }\n' });
      const readyz = () => request(`http://127.0.0.1:${g.adminPort}/readyz`);
      await until(async () => (await readyz()) === 200, 10_000, 'ready');
      const [victim] = readyPids(g.proc) as [number];
      process.kill(victim, 'SIGTERM'); // that worker drains (8 s accept grace), the others serve on
      await g.proc.waitFor(/workers not all ready/, 5000);
      // until its replacement is up: 503 on every worker, the draining one included
      expect(tally(await Promise.all(Array.from({ length: 20 }, readyz)))).toEqual({ 503: 20 });
      expect(tally(await statuses(`http://127.0.0.1:${g.port}/x`, 6))).toEqual({ 200: 6 });
      // the replacement starts while it drains; then 200 on every worker, the draining one included
      await until(() => readyPids(g.proc).length >= 4, 30_000, 'the replacement');
      await until(async () => (await readyz()) === 200, 10_000, 'ready again');
      expect(tally(await Promise.all(Array.from({ length: 30 }, readyz)))).toEqual({ 200: 30 });
      expect(g.proc.output()).not.toContain('worker exited after draining'); // it still drained then
      await g.proc.waitFor(/"code":0[^\n]*worker exited after draining/, 15_000);
      const about = lines(g.proc, new RegExp(`[^\\n]*"worker":${victim},[^\\n]*`, 'g')).map((m) => m[0]);
      expect(about.map((l) => /"msg":"([^"]+)"/.exec(l)?.[1])).toEqual([
        'worker draining; starting another',
        'worker exited after draining',
      ]);
      for (const line of about) expect(line).toMatch(/^\{"level":30,/);
      expect(tally(await statuses(`http://127.0.0.1:${g.port}/x`, 6))).toEqual({ 200: 6 });
    },
  );
});
