/**
 * `configWatch` through the real CLI (`bin/gatehouse.js start`), with the config in a directory laid
 * out as a Kubernetes ConfigMap volume: `gatehouse.yaml -> ..data/gatehouse.yaml`,
 * `..data -> ..<version>`, and an update written as the kubelet writes it (a new version
 * directory, a `..data_tmp` symlink renamed over `..data`, the old directory removed). Under
 * continuous load across 20 such updates no request fails; an invalid update is refused once,
 * however often it is re-written, and the running config keeps serving; with `workers` the primary
 * watches and every worker reloads.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request as undiciRequest } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { metricValue, sleep } from '../helpers/observe.js';
import { spawnCli, type CliProcess } from '../helpers/process.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

let proc: CliProcess | undefined;
const upstreams: Upstream[] = [];

afterEach(async () => {
  if (proc && proc.child.exitCode === null) proc.child.kill('SIGKILL');
  proc = undefined;
  await Promise.all(upstreams.splice(0).map((u) => u.close()));
});

/** An upstream that answers its name; `/slow` answers after 300 ms. */
async function named(name: string): Promise<Upstream> {
  const u = await startUpstream((req, res) => {
    req.resume();
    const answer = () => res.writeHead(200, { 'content-type': 'text/plain' }).end(name);
    if (req.url?.startsWith('/slow')) setTimeout(answer, 300);
    else answer();
  });
  upstreams.push(u);
  return u;
}

/** A directory laid out and updated as the kubelet does for a ConfigMap volume. */
function configMapVolume(first: string) {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-configmap-'));
  let version = 0;
  let current = '';
  const update = (text: string) => {
    const next = `..2026_01_01_00_00_${String(version++).padStart(2, '0')}.000000001`;
    mkdirSync(join(dir, next));
    writeFileSync(join(dir, next, 'gatehouse.yaml'), text);
    symlinkSync(next, join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data')); // the atomic swap
    if (current) rmSync(join(dir, current), { recursive: true });
    current = next;
  };
  update(first);
  symlinkSync(join('..data', 'gatehouse.yaml'), join(dir, 'gatehouse.yaml'));
  return { file: join(dir, 'gatehouse.yaml'), update, dir };
}

const config = (service: string, target: string, workers = 1) => `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
workers: ${workers}
services:
  ${service}: { targets: ["${target}"] }
routes:
  - { name: ${service}-all, match: { path: /** }, service: ${service} }
`;

const count = (text: string, pattern: RegExp) => [...text.matchAll(pattern)].length;

/** Waits until `pattern` has matched `n` times in the process's output. */
async function waitForCount(p: CliProcess, pattern: RegExp, n: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (count(p.output(), pattern) < n) {
    if (Date.now() > deadline || p.child.exitCode !== null)
      throw new Error(`saw ${pattern} ${count(p.output(), pattern)} times, not ${n}; output:\n${p.output()}`);
    await sleep(20);
  }
}

type Outcome = { path: string; status: number | string; body: string; start: number; end: number };

/**
 * Clients sending requests one after another on keep-alive connections until stopped; every
 * outcome is kept (status, or the error's code), with when it started and ended.
 */
function load(url: string, clients: number, pathFor: (client: number) => string) {
  const agent = new Agent({ connections: clients, keepAliveTimeout: 30_000 });
  const outcomes: Outcome[] = [];
  let stopped = false;
  const loops = Array.from({ length: clients }, async (_, client) => {
    while (!stopped) {
      const path = pathFor(client);
      const start = performance.now();
      try {
        const res = await undiciRequest(url + path, { dispatcher: agent });
        const body = await res.body.text();
        outcomes.push({ path, status: res.statusCode, body, start, end: performance.now() });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? String(err);
        outcomes.push({ path, status: code, body: '', start, end: performance.now() });
      }
      await sleep(5);
    }
  });
  return {
    outcomes,
    async stop() {
      stopped = true;
      await Promise.all(loops);
      await agent.close();
    },
  };
}

describe('configWatch: the config follows its file (a ConfigMap volume)', () => {
  it('20 updates under continuous load: every update reloads once, no request fails, in-flight requests finish on their config', async () => {
    const [a, b] = await Promise.all([named('a'), named('b')]);
    // even updates route everything to service a, odd ones to service b: each update removes
    // the service the previous config sent traffic to, whose connections must drain
    const nth = (i: number) => (i % 2 === 0 ? config('a', a.url) : config('b', b.url));
    const volume = configMapVolume(nth(0));
    proc = spawnCli(['start', '-c', volume.file], { LOG_LEVEL: 'info' });
    const [, port, adminPort] = await proc.waitFor(/"port":(\d+),"adminPort":(\d+)[^\n]*gatehouse ready/);
    const base = `http://127.0.0.1:${port}`;

    // five clients of fast requests, one of requests the upstream answers after 300 ms
    const traffic = load(base, 6, (client) => (client === 5 ? '/slow' : '/fast'));
    const reloadedAt: number[] = [];
    for (let i = 1; i <= 20; i++) {
      const served = traffic.outcomes.length;
      volume.update(nth(i));
      await waitForCount(proc, /"msg":"config reloaded"/g, i);
      reloadedAt.push(performance.now());
      // the new config answers, and the load ran across the update
      const expected = i % 2 === 0 ? 'a' : 'b';
      const probe = await fetch(`${base}/fast`);
      expect(await probe.text()).toBe(expected);
      while (traffic.outcomes.length < served + 20) await sleep(10);
    }
    await sleep(400); // the last slow requests end
    await traffic.stop();

    const failed = traffic.outcomes.filter((o) => o.status !== 200);
    const slow = traffic.outcomes.filter((o) => o.path === '/slow');
    // a slow request in flight while its service was removed by an update, and still answered
    const crossed = slow.filter((o) => reloadedAt.some((t) => o.start < t - 50 && o.end > t));
    console.log(
      `config-watch under load: ${traffic.outcomes.length} requests (${slow.length} slow, ` +
        `${crossed.length} in flight across an update), ${failed.length} failed, 20 updates`,
    );
    expect(failed).toEqual([]);
    expect(traffic.outcomes.length).toBeGreaterThan(400);
    expect(crossed.length).toBeGreaterThan(0);

    const out = proc.output();
    expect(count(out, /"msg":"config file changed; reloading"/g)).toBe(20);
    expect(count(out, /"trigger":"watch"[^\n]*"msg":"config reloaded"/g)).toBe(20);
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    expect(metricValue(metrics, 'gatehouse_config_reloads_total', { result: 'success' })).toBe(20);
    expect(metricValue(metrics, 'gatehouse_config_reloads_total', { result: 'failure' })).toBe(0);
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
  }, 60_000);

  it('an invalid update is refused, logged and counted once however often it is re-written; the running config keeps serving', async () => {
    const [a, b] = await Promise.all([named('a'), named('b')]);
    const volume = configMapVolume(config('a', a.url));
    proc = spawnCli(['start', '-c', volume.file], { LOG_LEVEL: 'info' });
    const [, port, adminPort] = await proc.waitFor(/"port":(\d+),"adminPort":(\d+)[^\n]*gatehouse ready/);
    const answer = async () => (await fetch(`http://127.0.0.1:${port}/x`)).text();

    const invalid = config('a', a.url).replace('targets: ["', 'targets: ["ftp://');
    volume.update(invalid);
    await waitForCount(proc, /"msg":"config reload rejected/g, 1);
    expect(await answer()).toBe('a');
    // the same bytes again, three times, and a touch: events, but nothing new to try
    for (let i = 0; i < 3; i++) {
      volume.update(invalid);
      await sleep(300); // past the debounce: each is a check of its own
    }
    utimesSync(volume.file, new Date(), new Date());
    await sleep(300);
    // a valid update after them is reloaded: the checks before it are done
    volume.update(config('b', b.url));
    await waitForCount(proc, /"msg":"config reloaded"/g, 1);
    expect(await answer()).toBe('b');

    const out = proc.output();
    const rejected = out.split('\n').filter((l) => l.includes('"msg":"config reload rejected'));
    expect(rejected).toHaveLength(1);
    expect(rejected[0]).toContain('"trigger":"watch"');
    expect(rejected[0]).toMatch(/services\.a\.targets\[0\]: must be an upstream origin/);
    expect(count(out, /"msg":"config file changed; reloading"/g)).toBe(2);
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    expect(metricValue(metrics, 'gatehouse_config_reloads_total', { result: 'failure' })).toBe(1);
    expect(metricValue(metrics, 'gatehouse_config_reloads_total', { result: 'success' })).toBe(1);
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
  }, 30_000);

  it('configWatch: false leaves the running config alone until SIGHUP', async () => {
    const [a, b] = await Promise.all([named('a'), named('b')]);
    const volume = configMapVolume('configWatch: false\n' + config('a', a.url));
    proc = spawnCli(['start', '-c', volume.file], { LOG_LEVEL: 'info' });
    const [, port] = await proc.waitFor(/"port":(\d+),"adminPort":(\d+)[^\n]*gatehouse ready/);
    volume.update('configWatch: false\n' + config('b', b.url));
    await sleep(600);
    expect(await (await fetch(`http://127.0.0.1:${port}/x`)).text()).toBe('a');
    proc.child.kill('SIGHUP');
    await waitForCount(proc, /"msg":"config reloaded"/g, 1);
    expect(await (await fetch(`http://127.0.0.1:${port}/x`)).text()).toBe('b');
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
  }, 30_000);

  it('with workers, the primary watches and reloads every worker once per update', async () => {
    const [a, b] = await Promise.all([named('a'), named('b')]);
    const volume = configMapVolume(config('a', a.url, 2));
    proc = spawnCli(['start', '-c', volume.file], { LOG_LEVEL: 'info' });
    await proc.waitFor(/gatehouse ready[\s\S]*gatehouse ready/);
    const [, port] = /"port":(\d+),"adminPort":(\d+)/.exec(proc.output()) ?? [];
    volume.update(config('b', b.url, 2));
    // the primary's two-phase reload: every worker gets the new config, one log line for all
    await waitForCount(proc, /"trigger":"watch"[^\n]*"workers":2,"msg":"config reloaded"/g, 1);
    await sleep(300);
    const out = proc.output();
    expect(count(out, /"msg":"config file changed; reloading"/g)).toBe(1); // one watcher: the primary's
    expect(count(out, /"msg":"config reloaded"/g)).toBe(1);
    for (let i = 0; i < 6; i++) expect(await (await fetch(`http://127.0.0.1:${port}/x`)).text()).toBe('b');
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
  }, 30_000);
});
