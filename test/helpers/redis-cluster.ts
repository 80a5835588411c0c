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
  /** the masters as created (after a failover some of them are replicas) */
  readonly nodes: readonly RedisNode[];
  /** the replicas as created, `replicas[i]` replicating `nodes[i]` at first */
  readonly replicas: readonly RedisNode[];
  /** `redis://127.0.0.1:port` of every master as created, for `redis: { cluster: [...] }` */
  readonly urls: readonly string[];
  /** waits until every node reports `cluster_state:ok` with every slot served by a live master */
  waitOk(timeoutMs?: number): Promise<void>;
  /** `CLUSTER FAILOVER` on `replica` (a node of `replicas`), resolved once it is a master */
  failover(replica: RedisNode, timeoutMs?: number): Promise<void>;
  /** the port of the master serving `slot` now, from CLUSTER SLOTS asked to a live node */
  masterOf(slot: number): Promise<number>;
  close(): Promise<void>;
};

export type ClusterOptions = {
  /** replicas per master (default 0) */
  replicas?: number;
  /** `cluster-node-timeout` in ms (default 5000): how long until a dead master fails over */
  nodeTimeoutMs?: number;
  /** `cluster-require-full-coverage` (default yes, Redis's default) */
  requireFullCoverage?: boolean;
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

/**
 * Until every node says `cluster_state:ok`, all 16384 slots assigned, every node known. With
 * `skipDown`, nodes that do not answer (stopped by the test) are left out.
 */
async function waitClusterOk(
  nodes: readonly RedisNode[],
  timeoutMs: number,
  skipDown = false,
): Promise<void> {
  const clients = nodes.map((n) => n.client());
  const deadline = Date.now() + timeoutMs;
  let last = '';
  try {
    for (;;) {
      const infos = await Promise.all(
        clients.map((c) =>
          (c.cluster('INFO') as Promise<string>).catch((err: Error) => `down: ${err.message}`),
        ),
      );
      const ok = infos.every(
        (info) =>
          (skipDown && info.startsWith('down: ')) ||
          (/cluster_state:ok/.test(info) &&
            /cluster_slots_assigned:16384/.test(info) &&
            /cluster_slots_fail:0\b/.test(info) &&
            new RegExp(`cluster_known_nodes:${nodes.length}\\b`).test(info)),
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
 * A Redis Cluster of `masters` (default 3) private nodes, with `replicas` per master (default
 * none), every slot assigned and `cluster_state:ok` on every node when this resolves.
 */
export async function startRedisCluster(
  masters = 3,
  timeoutMs = 20_000,
  options: ClusterOptions = {},
): Promise<RedisCluster> {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-cluster-'));
  const all: RedisNode[] = [];
  const replicasPer = options.replicas ?? 0;
  const close = async () => {
    await Promise.all(all.map((n) => n.stop()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const results = await Promise.allSettled(
      Array.from({ length: masters * (1 + replicasPer) }, () =>
        spawnNode(
          dir,
          (port) => [
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            join(dir, `nodes-${port}.conf`),
            '--cluster-node-timeout',
            String(options.nodeTimeoutMs ?? 5000),
            '--cluster-require-full-coverage',
            options.requireFullCoverage === false ? 'no' : 'yes',
          ],
          true,
        ),
      ),
    );
    for (const r of results) if (r.status === 'fulfilled') all.push(r.value);
    for (const r of results) if (r.status === 'rejected') throw r.reason;
    const nodes = all.slice(0, masters);
    const replicas = all.slice(masters);
    // masters first: `--cluster create` makes the first `masters` nodes masters
    await run(
      'redis-cli',
      [
        '--cluster',
        'create',
        ...all.map((n) => `${HOST}:${n.port}`),
        '--cluster-replicas',
        String(replicasPer),
        '--cluster-yes',
      ],
      timeoutMs,
    );
    await waitClusterOk(all, timeoutMs);
    if (replicasPer > 0) await waitReplicasSynced(replicas, timeoutMs);
    // the replica of each master, in the order of `nodes` (redis-cli assigns them itself)
    const replicaOf = await Promise.all(replicas.map((r) => masterPortOf(r)));
    const ordered = nodes.flatMap((m) => replicas.filter((_, i) => replicaOf[i] === m.port));
    const live = async (): Promise<Redis> => {
      for (const n of all) {
        const c = n.client();
        try {
          await c.ping();
          return c;
        } catch {
          c.disconnect();
        }
      }
      throw new Error('no live node');
    };
    return {
      nodes,
      replicas: ordered,
      urls: nodes.map((n) => n.url),
      waitOk: (ms = timeoutMs) => waitClusterOk(all, ms, true),
      async failover(replica, ms = timeoutMs) {
        const c = replica.client();
        try {
          // A manual failover is given up by Redis after 5 s (CLUSTER_MF_TIMEOUT), and the masters
          // refuse to vote for a replica of a shard they voted for less than 2 × node timeout ago
          // (a failover back soon after a failover): ask again until the replica is promoted.
          const deadline = Date.now() + ms;
          let asked = -Infinity;
          while (!/^role:master/m.test(await c.info('replication'))) {
            if (Date.now() > deadline) throw new Error(`${replica.port} not promoted after ${ms} ms`);
            if (Date.now() - asked > 5500) {
              await c.cluster('FAILOVER');
              asked = Date.now();
            }
            await sleep(50);
          }
        } finally {
          c.disconnect();
        }
      },
      async masterOf(slot) {
        const c = await live();
        try {
          const slots = (await c.cluster('SLOTS')) as unknown as Array<[number, number, [string, number]]>;
          const range = slots.find(([lo, hi]) => slot >= lo && slot <= hi);
          if (!range) throw new Error(`slot ${slot} not served`);
          return range[2][1];
        } finally {
          c.disconnect();
        }
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

async function masterPortOf(replica: RedisNode): Promise<number> {
  const c = replica.client();
  try {
    const info = await c.info('replication');
    return Number(/^master_port:(\d+)/m.exec(info)?.[1] ?? -1);
  } finally {
    c.disconnect();
  }
}

async function waitReplicasSynced(replicas: readonly RedisNode[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const r of replicas) {
    const c = r.client();
    try {
      while (!/^master_link_status:up/m.test(await c.info('replication'))) {
        if (Date.now() > deadline) throw new Error(`replica ${r.port} not in sync after ${timeoutMs} ms`);
        await sleep(50);
      }
    } finally {
      c.disconnect();
    }
  }
}
