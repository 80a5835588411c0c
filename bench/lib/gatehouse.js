// Starting Gatehouse (bin/gatehouse.js) with a generated config, for any benchmark.
import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePort, waitForHttp, waitForPort } from './net.js';
import { SkipError } from './measure.js';
import { makeTempDir, spawnProcess } from './proc.js';

/**
 * Minimal YAML writer for plain data (objects, arrays, strings, numbers, booleans, null).
 * Strings are written as JSON strings, which are valid double-quoted YAML scalars.
 * @param {unknown} value
 * @param {string} [indent]
 * @returns {string}
 */
export function toYaml(value, indent = '') {
  if (!isBlock(value)) return `${indent}${inline(value)}\n`;
  if (Array.isArray(value)) {
    return value
      .map((item) => {
        if (!isBlock(item)) return `${indent}- ${inline(item)}\n`;
        // The item's first line goes on the dash's line.
        return `${indent}- ${toYaml(item, `${indent}  `).slice(indent.length + 2)}`;
      })
      .join('');
  }
  return Object.entries(/** @type {object} */ (value))
    .map(([k, v]) => {
      const name = /^[A-Za-z_][\w-]*$/.test(k) ? k : JSON.stringify(k);
      return isBlock(v)
        ? `${indent}${name}:\n${toYaml(v, `${indent}  `)}`
        : `${indent}${name}: ${inline(v)}\n`;
    })
    .join('');
}

/**
 * A non-empty object or array, written as a block.
 * @param {unknown} v
 */
function isBlock(v) {
  return v !== null && typeof v === 'object' && Object.keys(v).length > 0;
}

/**
 * A scalar or an empty object or array, written on one line.
 * @param {unknown} v
 */
function inline(v) {
  if (Array.isArray(v)) return '[]';
  if (v !== null && typeof v === 'object') return '{}';
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}

/**
 * The benchmark config: every path to one service with a pool of `connections` to the upstream.
 * @param {{ port: number, adminPort: number, upstreamUrl: string, connections?: number }} opts
 * @returns {Record<string, unknown>}
 */
export function benchConfig({ port, adminPort, upstreamUrl, connections = 64 }) {
  return {
    listen: { host: '127.0.0.1', port },
    admin: { host: '127.0.0.1', port: adminPort },
    workers: 1,
    services: {
      bench: { targets: [upstreamUrl.replace(/\/$/, '')], pool: { connections } },
    },
    routes: [{ name: 'bench', match: { path: '/**' }, service: 'bench' }],
  };
}

/**
 * @typedef {object} GatehouseHandle
 * @property {string} url  the proxy's listen URL
 * @property {string} adminUrl
 * @property {string} configPath
 * @property {import('./proc.js').ProcessHandle} proc
 * @property {() => boolean} running
 * @property {() => Promise<void>} stop
 */

/**
 * Starts `node <repoDir>/bin/gatehouse.js start -c <generated yaml>` and waits for the admin
 * `GET /readyz` to answer 200. Throws SkipError (with the gateway's output) when the gateway is
 * missing or does not get ready, so that a benchmark can skip the row instead of crashing.
 * @param {object} opts
 * @param {string} opts.repoDir
 * @param {string} opts.upstreamUrl
 * @param {number | string | null} [opts.cpu]  CPU (or taskset list) to pin to
 * @param {string} [opts.node]  the node binary (default: the runner's)
 * @param {(config: Record<string, unknown>) => Record<string, unknown>} [opts.configure]
 *   changes the default benchmark config (e.g. turns a plugin on) before it is written
 * @param {Record<string, string>} [opts.env]  default: LOG_LEVEL=warn
 * @param {number} [opts.readyTimeoutMs]
 * @param {string[]} [opts.nodeArgs]  options for node itself (e.g. --cpu-prof), before the script
 * @param {'collect' | 'ignore'} [opts.stdout]  'ignore': the gateway's stdout goes to /dev/null
 *   (e.g. access logs written at full rate, which a pipe into this runner would slow down);
 *   stderr is still kept for the reason of a failed start
 * @returns {Promise<GatehouseHandle>}
 */
export async function startGatehouse({
  repoDir,
  upstreamUrl,
  cpu = null,
  configure,
  env,
  readyTimeoutMs = 30_000,
  stdout = 'collect',
  node = process.execPath,
  nodeArgs = [],
}) {
  const bin = path.join(repoDir, 'bin', 'gatehouse.js');
  if (!existsSync(bin)) throw new SkipError(`${bin} does not exist yet: gatehouse not measured`);
  if (!existsSync(path.join(repoDir, 'dist'))) {
    throw new SkipError(`${path.join(repoDir, 'dist')} is missing: build first with  npm run build`);
  }
  const port = await freePort();
  let adminPort = await freePort();
  while (adminPort === port) adminPort = await freePort();
  let config = benchConfig({ port, adminPort, upstreamUrl });
  if (configure) config = configure(config);
  const dir = makeTempDir('gatehouse-bench-gw-');
  const configPath = path.join(dir, 'gatehouse.yaml');
  writeFileSync(configPath, toYaml(config));

  const command = [...nodeArgs, bin, 'start', '-c', configPath];
  const proc = spawnProcess({
    name: 'gatehouse',
    ...(stdout === 'ignore'
      ? // exec: the shell is replaced by node, which keeps the CPU pinning and the process group
        { cmd: 'sh', args: ['-c', 'exec "$@" >/dev/null', 'sh', node, ...command] }
      : { cmd: node, args: command }),
    cwd: repoDir,
    cpu,
    env: env ?? { LOG_LEVEL: 'warn' },
  });
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  try {
    await waitForHttp(`${adminUrl}/readyz`, {
      timeoutMs: readyTimeoutMs,
      isAlive: proc.running,
      what: 'gatehouse',
    });
    await waitForPort(port, { timeoutMs: 5000, isAlive: proc.running, what: 'gatehouse' });
  } catch (err) {
    await proc.stop();
    const output = proc.output().trim();
    const detail = output
      ? `\n--- gatehouse output (last lines) ---\n${output.split('\n').slice(-20).join('\n')}`
      : '';
    throw new SkipError(`gatehouse did not start: ${err instanceof Error ? err.message : err}${detail}`);
  }
  return {
    url: `http://127.0.0.1:${port}/`,
    adminUrl,
    configPath,
    proc,
    running: proc.running,
    stop: () => proc.stop(),
  };
}
