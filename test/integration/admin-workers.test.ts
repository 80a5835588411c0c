/**
 * The admin controls with `workers`: the admin port is shared, any worker may answer, and the
 * controls (log level, manual drain, a target out of rotation) reach every worker through the
 * primary, also a worker started after them.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { request as call } from '../helpers/http-client.js';
import { startUpstream } from '../helpers/upstream.js';
import { cleanup, h, readyPids, request, startGroup, statuses, tally, until } from '../helpers/workers.js';

afterEach(cleanup);

const json = (body: Buffer) => JSON.parse(body.toString()) as Record<string, unknown>;

describe('admin controls with workers', () => {
  it('apply to every worker, and to a worker started later', { timeout: 90_000 }, async () => {
    h.upstream = await startUpstream();
    const g = await startGroup(2);
    const admin = `http://127.0.0.1:${g.adminPort}`;
    await until(async () => (await request(`${admin}/readyz`)) === 200, 10_000, 'ready');
    const put = (path: string, method: string, body?: unknown) =>
      call(`${admin}${path}`, {
        method,
        ...(body === undefined
          ? {}
          : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
      });

    const level = await put('/logging/level', 'PUT', { level: 'debug' });
    expect(json(level.body)).toEqual({ level: 'debug', processes: 2 });
    // each new connection may reach either worker: every one answers with the new level
    const seen = new Map<number, string>();
    await until(
      async () => {
        const s = json((await call(`${admin}/status`)).body);
        seen.set((s.workers as { pid: number }).pid, s.logLevel as string);
        return seen.size === 2;
      },
      10_000,
      'both workers to answer /status',
    );
    expect([...seen.values()]).toEqual(['debug', 'debug']);
    expect(json((await call(`${admin}/status`)).body).workers).toMatchObject({ count: 2, mode: 'cluster' });

    expect(json((await put('/drain', 'POST')).body)).toEqual({ draining: true, processes: 2 });
    expect(tally(await statuses(`${admin}/readyz`, 12))).toEqual({ 503: 12 });

    const target = new URL(h.upstream.url).host;
    expect(json((await put(`/services/echo/targets/${target}/disable`, 'POST')).body)).toMatchObject({
      disabled: true,
      processes: 2,
    });
    expect(tally(await statuses(`http://127.0.0.1:${g.port}/x`, 12))).toEqual({ 503: 12 });

    // a worker that dies is replaced; its replacement gets the controls in force before it is ready
    const [first] = readyPids(g.proc);
    process.kill(first as number, 'SIGKILL');
    await until(() => new Set(readyPids(g.proc)).size >= 3, 30_000, 'a replacement worker');
    expect(tally(await statuses(`${admin}/readyz`, 12))).toEqual({ 503: 12 });
    expect(tally(await statuses(`http://127.0.0.1:${g.port}/x`, 12))).toEqual({ 503: 12 });

    expect(json((await put(`/services/echo/targets/${target}/enable`, 'POST')).body)).toMatchObject({
      processes: 2,
    });
    expect(json((await put('/drain', 'DELETE')).body)).toEqual({ draining: false, processes: 2 });
    await until(async () => (await request(`${admin}/readyz`)) === 200, 10_000, 'ready again');
    expect(tally(await statuses(`${admin}/readyz`, 12))).toEqual({ 200: 12 });
    expect(tally(await statuses(`http://127.0.0.1:${g.port}/x`, 12))).toEqual({ 200: 12 });
  });
});
