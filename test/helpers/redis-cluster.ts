/**
 * Private Redis servers for tests: a single node (`startRedisNode`), or a Redis Cluster of three
 * masters (`startRedisCluster`: `redis-server --cluster-enabled yes` on free loopback ports, joined
 * by `redis-cli --cluster create`). Nothing is persisted; `close()` stops every process and
 * removes the temporary directory. Never touches the shared Redis on 6379.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

const HOST = '127.0.0.1';

export type RedisNode = {
  readonly port: number;
  readonly url: string;
  /** the server's log so far (for error messages) */
  output(): string;
  /** a new plain client to this node (the caller disconnects it) */
  client(): Redis;
  stop(): Promise<void>;
  /** stops the server (if running) and starts it again on the same port, with the same files */
  restart(): Promise<void>;
};

export type RedisCluster = {
  readonly nodes: readonly RedisNode[];
  /** `redis://127.0.0.1:port` of every master, for `redis: { cluster: [...] }` */
  readonly urls: readonly string[];
  close(): Promise<void>;
};

function listenOnce(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(null));
    server.listen(port, HOST, () => {
      const address = server.address();
      const got = typeof address === 'object' && address !== null ? address.port : null;
      server.close(() => resolve(got));
    });
  });
}

/** A free port; with `bus`, port + 10000 (the cluster bus) is free too. */
async function freePort(bus: boolean): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await listenOnce(0);
    if (port === null) continue;
    if (!bus) return port;
    if (port + 10000 > 65535) continue;
    if ((await listenOnce(port + 10000)) !== null) return port;
  }
  throw new Error('redis test helper: no free port found');
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function stopProcess(child: ChildProcess, timeoutMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = exited(child);
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const killed = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve();
    }, timeoutMs);
  });
  await Promise.race([done, killed]);
  clearTimeout(timer);
  await done;
}

function missingBinary(name: string, err: NodeJS.ErrnoException): Error {
  return err.code === 'ENOENT'
    ? new Error(`${name} not found: install the Debian package redis-server (scripts/test-deps.sh)`)
    : err;
}

type Launched = { child: ChildProcess; output(): string };

/** Servers still running: killed if the test process exits without closing them. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/** Starts redis-server with `args` and resolves once it accepts connections on `port`. */
async function launch(port: number, args: string[]): Promise<Launched> {
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  child.once('exit', () => running.delete(child));
  let out = '';
  const started = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`redis-server on port ${port} not ready after 10 s:\n${out}`)),
      10_000,
    );
    const onData = (d: Buffer) => {
      out += d.toString();
      if (/Ready to accept connections/.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(missingBinary('redis-server', err));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`redis-server on port ${port} exited (${code ?? signal}) before ready:\n${out}`));
    });
  });
  try {
    await started;
  } catch (err) {
    await stopProcess(child);
    throw err;
  }
  return { child, output: () => out };
}

/** Spawns one redis-server on a free port (another one if it loses a race for it). */
async function spawnNode(
  dir: string,
  extraArgs: (port: number) => string[],
  bus: boolean,
): Promise<RedisNode> {
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort(bus);
    const args = [
      '--port',
      String(port),
      '--bind',
      HOST,
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'no',
      '--dir',
      dir,
      '--dbfilename',
      `dump-${port}.rdb`,
      ...extraArgs(port),
    ];
    let current: Launched;
    try {
      current = await launch(port, args);
    } catch (err) {
      lastError = err as Error;
      if (/Address already in use/i.test(lastError.message)) continue; // lost a race: another port
      throw lastError;
    }
    return {
      port,
      url: `redis://${HOST}:${port}`,
      output: () => current.output(),
      client: () => {
        const client = new Redis({ host: HOST, port, maxRetriesPerRequest: 1 });
        client.on('error', () => undefined); // a stopped node: commands fail, no stderr noise
        return client;
      },
      stop: () => stopProcess(current.child),
      restart: async () => {
        await stopProcess(current.child);
        current = await launch(port, args);
      },
    };
  }
  throw lastError ?? new Error('redis-server did not start');
}

/** One private redis-server (no persistence) on a free loopback port. */
export async function startRedisNode(): Promise<RedisNode & { close(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-redis-'));
  try {
    const node = await spawnNode(dir, () => [], false);
    return {
      ...node,
      close: async () => {
        await node.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} timed out after ${timeoutMs} ms:\n${out}`));
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(missingBinary(cmd, err));
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ')} exited with ${code}:\n${out}`));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitClusterOk(nodes: readonly RedisNode[], timeoutMs: number): Promise<void> {
  const clients = nodes.map((n) => n.client());
  const deadline = Date.now() + timeoutMs;
  let last = '';
  try {
    for (;;) {
      const infos = await Promise.all(clients.map((c) => c.cluster('INFO') as Promise<string>));
      const ok = infos.every(
        (info) =>
          /cluster_state:ok/.test(info) &&
          /cluster_slots_assigned:16384/.test(info) &&
          new RegExp(`cluster_known_nodes:${nodes.length}\\b`).test(info),
      );
      if (ok) return;
      last = infos.join('\n');
      if (Date.now() > deadline)
        throw new Error(`redis cluster not ok after ${timeoutMs} ms; CLUSTER INFO:\n${last}`);
      await sleep(50);
    }
  } finally {
    for (const c of clients) c.disconnect();
  }
}

/**
 * A Redis Cluster of `masters` (default 3) private nodes, no replicas, every slot assigned and
 * `cluster_state:ok` on every node when this resolves.
 */
export async function startRedisCluster(masters = 3, timeoutMs = 20_000): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-cluster-'));
  const nodes: RedisNode[] = [];
  const close = async () => {
    await Promise.all(nodes.map((n) => n.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const results = await Promise.allSettled(
      Array.from({ length: masters }, () =>
        spawnNode(
          dir,
          (port) => [
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            join(dir, `nodes-${port}.conf`),
            '--cluster-node-timeout',
            '5000',
          ],
          true,
        ),
      ),
    );
    for (const r of results) if (r.status === 'fulfilled') nodes.push(r.value);
    for (const r of results) if (r.status === 'rejected') throw r.reason;
    await run(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...nodes.map((n) => `${HOST}:${n.port}`),
        '--cluster-replicas',
        '0',
        '--cluster-yes',
      ],
      timeoutMs,
    );
    await waitClusterOk(nodes, timeoutMs);
    return { nodes, urls: nodes.map((n) => n.url), close };
  } catch (err) {
    await close();
    throw err;
  }
}
