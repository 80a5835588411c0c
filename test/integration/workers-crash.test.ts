/**
 * Multi-process mode (`workers: N`) through the real CLI, when workers die: killed at once,
 * a port in use, a stop right after a crash, a crash loop, the config a replacement runs, and
 * connections during a crash (the scheduling policy).
 */
import { unlinkSync, writeFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { createServer } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { freePorts } from '../helpers/free-port.js';
import { makeKey } from '../helpers/jwks.js';
import { spawnCli, writeTempConfig } from '../helpers/process.js';
import { startUpstream } from '../helpers/upstream.js';
import {
  cleanup,
  config,
  h,
  lines,
  portRefuses,
  readyPids,
  request,
  startGroup,
  statuses,
  tally,
  until,
} from '../helpers/workers.js';

afterEach(cleanup);

describe('multi-process gateway: workers die', () => {
  it('all workers killed at once are replaced; the primary keeps running', { timeout: 60_000 }, async () => {
    h.upstream = await startUpstream();
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
    const blocker = createServer();
    h.blocker = blocker;
    await new Promise<void>((r) => blocker.listen(port, '127.0.0.1', r));
    const proc = spawnCli(['start', '-c', writeTempConfig(config({ port, adminPort, workers: 2 }))], {
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
      h.upstream = await startUpstream((_req, res) => {
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
      h.upstream = await startUpstream();
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
      h.upstream = await startUpstream();
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
      h.upstream = await startUpstream();
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
