/**
 * Multi-process mode answers for the whole group: `POST /reload` (all workers or none, counted
 * once), `/metrics` across a crash (sums never drop), `/readyz` the same on every worker.
 */
import { writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { freePorts } from '../helpers/free-port.js';
import { metricValue } from '../helpers/observe.js';
import { spawnCli, writeTempConfig } from '../helpers/process.js';
import { startUpstream } from '../helpers/upstream.js';
import {
  cleanup,
  config,
  h,
  lines,
  readyPids,
  request,
  scrape,
  startGroup,
  statuses,
  tally,
  total,
  until,
} from '../helpers/workers.js';

afterEach(cleanup);

describe('multi-process gateway: one answer for the group', () => {
  it(
    'POST /reload answers once every worker has the new config, counted once',
    { timeout: 60_000 },
    async () => {
      h.upstream = await startUpstream();
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
      h.upstream = await startUpstream();
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
      h.upstream = await startUpstream();
      const [port, adminPort] = (await freePorts(2)) as [number, number];
      const proc = spawnCli(['start', '-c', writeTempConfig(config({ port, adminPort, workers: 3 }))], {
        LOG_LEVEL: 'info',
      });
      h.proc = proc; // stopped by cleanup (a primary left running keeps its workers serving)
      const readyz = () => request(`http://127.0.0.1:${adminPort}/readyz`);
      // polled from the moment the admin port answers: at the first 200, every worker is up
      await until(async () => (await readyz()) === 200, 30_000, 'ready');
      await new Promise((r) => setTimeout(r, 20)); // the log lines were written before it
      expect(new Set(readyPids(proc)).size).toBe(3);

      process.kill(readyPids(proc)[0] as number, 'SIGKILL');
      await proc.waitFor(/worker died/, 10_000);
      // the survivors answer for the group: not ready until the replacement is up
      expect(tally(await Promise.all(Array.from({ length: 10 }, readyz)))).toEqual({ 503: 10 });
      await until(() => readyPids(proc).length >= 4, 30_000, 'the replacement');
      await until(async () => (await readyz()) === 200, 10_000, 'ready again');
      expect(tally(await Promise.all(Array.from({ length: 20 }, readyz)))).toEqual({ 200: 20 });
    },
  );

  it(
    '/readyz answers the same on every worker while one drains alone; it is replaced at once, its clean exit logged at info',
    { timeout: 60_000 },
    async () => {
      h.upstream = await startUpstream();
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
