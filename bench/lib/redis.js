// A private redis-server for a benchmark (never the shared one: the load would disturb others and
// they would disturb the figures), pinned with the load, without persistence.
import { freePort, waitForPort } from './net.js';
import { makeTempDir, runSync, spawnProcess, which } from './proc.js';

/** `Redis server v=7.0.15 sha=…` -> '7.0.15'. */
export function redisVersion() {
  const bin = which('redis-server');
  if (!bin) return null;
  return /v=(\S+)/.exec(runSync(bin, ['--version']).output)?.[1] ?? null;
}

/**
 * @param {{ cpu?: number | string | null }} [opts]
 * @returns {Promise<{ url: string, port: number, proc: import('./proc.js').ProcessHandle, stop: () => Promise<void> }>}
 */
export async function startRedis({ cpu = null } = {}) {
  const bin = which('redis-server');
  if (!bin) throw new Error('redis-server is not installed (Debian package redis-server)');
  const dir = makeTempDir('gatehouse-bench-redis-');
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
  args.push('--dir', dir, '--daemonize', 'no', '--loglevel', 'warning');
  const proc = spawnProcess({ name: 'redis-server', cmd: bin, args, cpu });
  try {
    await waitForPort(port, { isAlive: proc.running, what: 'redis-server' });
  } catch (err) {
    await proc.stop();
    throw new Error(`${err instanceof Error ? err.message : err}\n${proc.output()}`);
  }
  return { url: `redis://127.0.0.1:${port}`, port, proc, stop: () => proc.stop() };
}
