/**
 * Signals to the real CLI: SIGHUP while the workers start (to the primary and to the whole
 * process group), `kill -TERM -- -<pgid>` and repeated SIGTERMs, with workers and without.
 */
import type { ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { freePorts } from '../helpers/free-port.js';
import { spawnCli, writeTempConfig } from '../helpers/process.js';
import { startUpstream } from '../helpers/upstream.js';
import {
  catchesSighup,
  childPids,
  cleanup,
  config,
  h,
  lines,
  readyPids,
  request,
  startGroup,
  statuses,
  tally,
  until,
} from '../helpers/workers.js';

afterEach(cleanup);

describe('multi-process gateway: signals', () => {
  it(
    'SIGHUP while the workers start (to the primary, then to the whole group) kills nothing',
    { timeout: 60_000 },
    async () => {
      h.upstream = await startUpstream();
      const [port, adminPort] = (await freePorts(2)) as [number, number];
      const proc = spawnCli(
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
        if (group && new Set(readyPids(proc)).size < 2) toGroup++;
        else toPrimary++;
      }, 10);
      try {
        await until(() => new Set(readyPids(proc)).size >= 2, 30_000, 'workers up');
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
      h.upstream = await startUpstream((_req, res) => {
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
    h.upstream = await startUpstream((_req, res) => {
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
