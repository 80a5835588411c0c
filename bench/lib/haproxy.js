// HAProxy as a reference reverse proxy: one process, one thread, keep-alive to the upstream.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePort, waitForPort } from './net.js';
import { makeTempDir, runSync, spawnProcess, which } from './proc.js';

/**
 * haproxy.cfg text: HTTP mode, `nbthread 1`, server connections kept alive and shared between client
 * connections (`http-reuse always`), no logging.
 * @param {{ port: number, upstreamPort: number, threads?: number }} opts
 * @returns {string}
 */
export function haproxyConfig({ port, upstreamPort, threads = 1 }) {
  return `global
  nbthread ${threads}
  maxconn 4096

defaults
  mode http
  option http-keep-alive
  http-reuse always
  timeout connect 5s
  timeout client 30s
  timeout server 30s

frontend bench
  bind 127.0.0.1:${port}
  default_backend upstream

backend upstream
  server up 127.0.0.1:${upstreamPort}
`;
}

/** `HAProxy version 2.6.12-1+deb12u4 2025/…` -> '2.6.12-1+deb12u4'. */
export function haproxyVersion() {
  const bin = which('haproxy');
  if (!bin) return null;
  return /version (\S+)/.exec(runSync(bin, ['-v']).output)?.[1] ?? null;
}

/**
 * Starts HAProxy in the foreground (`-db`: no daemon, no master) with its own config.
 * @param {{ upstreamPort: number, cpu?: number | string | null, threads?: number }} opts
 */
export async function startHaproxy({ upstreamPort, cpu = null, threads = 1 }) {
  const bin = which('haproxy');
  if (!bin) throw new Error('haproxy is not installed');
  const dir = makeTempDir('gatehouse-bench-haproxy-');
  const port = await freePort();
  const conf = path.join(dir, 'haproxy.cfg');
  writeFileSync(conf, haproxyConfig({ port, upstreamPort, threads }));
  const proc = spawnProcess({ name: 'haproxy', cmd: bin, args: ['-db', '-f', conf], cpu });
  try {
    await waitForPort(port, { isAlive: proc.running, what: 'haproxy' });
  } catch (err) {
    await proc.stop();
    throw new Error(`${err instanceof Error ? err.message : err}\n${proc.output()}`);
  }
  return { url: `http://127.0.0.1:${port}/`, proc, stop: () => proc.stop() };
}
