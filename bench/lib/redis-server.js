// A private redis-server for one benchmark, on a free loopback port, that the benchmark may stop
// and start again on the same port (the soak's Redis restart). Nothing is persisted: no RDB
// snapshot, no AOF, so a restart comes back empty, as a Redis that lost its memory does.
import { freePort, waitForPort } from './net.js';
import { makeTempDir, spawnProcess, which } from './proc.js';

/**
 * @typedef {object} PrivateRedis
 * @property {number} port
 * @property {string} url
 * @property {() => Promise<void>} stop  SIGTERM (then SIGKILL); the port stays reserved for start()
 * @property {() => Promise<void>} start  starts it again on the same port
 * @property {() => boolean} running
 * @property {() => number | undefined} pid
 */

/**
 * Starts redis-server (from PATH) on a free port.
 * @param {{ cpu?: number | null }} [opts]
 * @returns {Promise<PrivateRedis>}
 */
export async function startPrivateRedis({ cpu = null } = {}) {
  const bin = which('redis-server');
  if (bin === null) throw new Error('redis-server is not installed (apt-get install -y redis-server)');
  const port = await freePort();
  const dir = makeTempDir('gatehouse-bench-redis-');
  /** @type {import('./proc.js').ProcessHandle | null} */
  let proc = null;
  const start = async () => {
    const p = spawnProcess({
      name: 'redis-server',
      cmd: bin,
      args: ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir],
      cpu,
    });
    proc = p;
    try {
      await waitForPort(port, { isAlive: p.running, what: 'redis-server', timeoutMs: 10_000 });
    } catch (err) {
      await p.stop();
      throw new Error(`${err instanceof Error ? err.message : err}\n${p.output()}`);
    }
  };
  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    start,
    stop: async () => {
      await proc?.stop();
    },
    running: () => proc?.running() ?? false,
    pid: () => proc?.child.pid,
  };
}
