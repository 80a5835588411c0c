import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { makeKey } from '../helpers/jwks.js';
import { metricValue } from '../helpers/observe.js';
import { spawnCli, writeTempConfig, type CliProcess } from '../helpers/process.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

let proc: CliProcess | undefined;
let upstream: Upstream | undefined;

afterEach(async () => {
  if (proc && proc.child.exitCode === null) proc.child.kill('SIGKILL');
  await upstream?.close();
  proc = undefined;
  upstream = undefined;
});

const yaml = (upstreamUrl: string, workers: string) => `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
workers: ${workers}
services:
  echo: { targets: ["${upstreamUrl}"] }
routes:
  - { name: all, match: { path: /** }, service: echo }
`;

describe('gatehouse start (a real process)', () => {
  it('serves, then exits 0 on SIGTERM after draining', async () => {
    upstream = await startUpstream();
    proc = spawnCli(['start', '-c', writeTempConfig(yaml(upstream.url, '1'))], { LOG_LEVEL: 'info' });
    const ready = await proc.waitFor(/"port":(\d+),"adminPort":(\d+)[^\n]*gatehouse ready/);
    const res = await fetch(`http://127.0.0.1:${ready[1]}/hello`);
    expect(res.status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${ready[2]}/readyz`)).status).toBe(200);
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
    expect(proc.output()).toContain('"msg":"stopped"');
  });

  it('runs one worker per requested process on one port, and stops them all on SIGTERM', async () => {
    upstream = await startUpstream();
    // port 0 with cluster: workers share the port the first one got
    proc = spawnCli(
      [
        'start',
        '-c',
        writeTempConfig(yaml(upstream.url, '2').replace('port: 0 }\nadmin', 'port: 0 }\nadmin')),
      ],
      {
        LOG_LEVEL: 'info',
      },
    );
    await proc.waitFor(/gatehouse ready[\s\S]*gatehouse ready/);
    const pids = new Set(
      [...proc.output().matchAll(/"pid":(\d+),"worker":true[^\n]*gatehouse ready/g)].map((m) => m[1]),
    );
    expect(pids.size).toBe(2);
    const ports = new Set([...proc.output().matchAll(/"port":(\d+)[^\n]*gatehouse ready/g)].map((m) => m[1]));
    expect(ports.size).toBe(1);
    const port = [...ports][0];
    for (let i = 0; i < 4; i++) expect((await fetch(`http://127.0.0.1:${port}/x`)).status).toBe(200);
    // /metrics on whichever worker answers counts every worker's requests (aggregated by the primary)
    const [, adminPort] = /"adminPort":(\d+)/.exec(proc.output()) ?? [];
    for (let i = 0; i < 4; i++) {
      const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
      expect(text).toContain(
        'gatehouse_requests_total{route="all",service="echo",method="GET",status="200"} 4',
      );
      expect(text).toContain('gatehouse_target_healthy{service="echo"');
      expect(text).toMatch(/gatehouse_build_info\{version="[^"]+"\} 1\n/);
    }
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
  });

  it("a reload through one worker's admin API reaches every worker; SIGHUP reloads too", async () => {
    upstream = await startUpstream();
    const base = yaml(upstream.url, '2');
    const file = writeTempConfig(base);
    proc = spawnCli(['start', '-c', file], { LOG_LEVEL: 'info' });
    // two workers each load the whole gateway: slow on a busy machine (the suite runs files in parallel)
    await proc.waitFor(/gatehouse ready[\s\S]*gatehouse ready/, 30_000);
    const [, port, adminPort] = /"port":(\d+),"adminPort":(\d+)/.exec(proc.output()) ?? [];
    const allOk = async (path: string, status: number) => {
      for (let i = 0; i < 6; i++)
        expect((await fetch(`http://127.0.0.1:${port}${path}`)).status).toBe(status);
    };
    await allOk('/x', 200);

    writeFileSync(file, base.replace('path: /**', 'path: /only/**'));
    const res = await fetch(`http://127.0.0.1:${adminPort}/reload`, { method: 'POST' });
    expect(res.status).toBe(200);
    await vi.waitFor(() => allOk('/x', 404), { timeout: 5000, interval: 100 });
    await allOk('/only/x', 200);

    writeFileSync(file, base);
    proc.child.kill('SIGHUP');
    await vi.waitFor(() => allOk('/x', 200), { timeout: 5000, interval: 100 });
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
  });

  it('a SIGHUP reload that fails is logged and counted; the process keeps serving the running config', async () => {
    upstream = await startUpstream();
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-sighup-'));
    const key = await makeKey('k1');
    const pem = join(dir, 'key.pem');
    writeFileSync(pem, key.publicPem);
    // SIGHUP alone: the file watch (configWatch) would reload the same edits a second time
    const withKey = (file: string) =>
      'configWatch: false\n' +
      yaml(upstream!.url, '1') +
      `  - { name: jwt, match: { path: /jwt/** }, service: echo, auth: [jwt] }\n` +
      `auth: { jwt: { publicKeys: ["${file}"] } }\n`;
    const file = writeTempConfig(withKey(pem));
    proc = spawnCli(['start', '-c', file], { LOG_LEVEL: 'info' });
    const [, port, adminPort] = await proc.waitFor(/"port":(\d+),"adminPort":(\d+)[^\n]*gatehouse ready/);
    const serving = async () => expect((await fetch(`http://127.0.0.1:${port}/x`)).status).toBe(200);

    // the file names a key file that is not there: refused by the loader
    const missing = join(dir, 'missing.pem');
    writeFileSync(file, withKey(missing));
    proc.child.kill('SIGHUP');
    const [rejected] = await proc.waitFor(/[^\n]*config reload rejected[^\n]*/);
    expect(rejected).toContain('"trigger":"SIGHUP"');
    expect(rejected).toContain(`auth.jwt.publicKeys[0]: cannot read \\"${missing}\\"`);
    await serving();

    // a key file that is fine for the loader, unusable by the time the new runtime reads it
    // (a FIFO: each read gets what the test writes next)
    const fifo = join(dir, 'key.fifo');
    execFileSync('mkfifo', [fifo]);
    writeFileSync(file, withKey(fifo));
    proc.child.kill('SIGHUP');
    await writeFile(fifo, key.publicPem); // the loader's check
    // the next writer must not join the loader's read: wait until the gateway has closed the file
    const pid = proc.child.pid as number;
    const opened = () =>
      readdirSync(`/proc/${pid}/fd`).some((fd) => {
        try {
          return readlinkSync(`/proc/${pid}/fd/${fd}`) === fifo;
        } catch {
          return false; // closed meanwhile
        }
      });
    await vi.waitFor(() => expect(opened()).toBe(false), { timeout: 5000, interval: 10 });
    await writeFile(fifo, 'not a key'); // the key source's read, when the new runtime gets ready
    const [failed] = await proc.waitFor(/[^\n]*config reload failed[^\n]*/);
    expect(failed).toContain('"trigger":"SIGHUP"');
    expect(failed).toContain(fifo);
    await serving();

    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    expect(metricValue(metrics, 'gatehouse_config_reloads_total', { result: 'failure' })).toBe(2);
    proc.child.kill('SIGTERM');
    expect(await proc.exited).toBe(0);
  });

  it('refuses to start with an invalid config, naming file and line', async () => {
    const file = writeTempConfig('listen: { port: nope }\n');
    proc = spawnCli(['start', '-c', file]);
    expect(await proc.exited).toBe(1);
    expect(proc.output()).toContain(`${file}:1:11: listen.port:`);
  });
});
