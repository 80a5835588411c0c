/**
 * A private Redis Cluster for tests: three masters by default (private servers of
 * redis-server.ts started with `--cluster-enabled yes`, joined by `redis-cli --cluster create`).
 * Nothing is persisted; `close()` stops every process and removes the temporary directory.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { HOST, missingBinary, startRedisServer, type RedisServer } from './redis-server.js';

export type RedisCluster = {
  /** the masters as created (after a failover some of them are replicas) */
  readonly nodes: readonly RedisServer[];
  /** the replicas as created, `replicas[i]` replicating `nodes[i]` at first */
  readonly replicas: readonly RedisServer[];
  /** `redis://127.0.0.1:port` of every master as created, for `redis: { cluster: [...] }` */
  readonly urls: readonly string[];
  /** waits until every node reports `cluster_state:ok` with every slot served by a live master */
  waitOk(timeoutMs?: number): Promise<void>;
  /** `CLUSTER FAILOVER` on `replica` (a node of `replicas`), resolved once it is a master */
  failover(replica: RedisServer, timeoutMs?: number): Promise<void>;
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
  nodes: readonly RedisServer[],
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
  const all: RedisServer[] = [];
  const replicasPer = options.replicas ?? 0;
  const close = async () => {
    await Promise.all(all.map((n) => n.close()));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const results = await Promise.allSettled(
      Array.from({ length: masters * (1 + replicasPer) }, () =>
        startRedisServer({
          dir,
          clusterBus: true,
          args: (port) => [
            '--cluster-enabled',
            'yes',
            '--cluster-config-file',
            join(dir, `nodes-${port}.conf`),
            '--cluster-node-timeout',
            String(options.nodeTimeoutMs ?? 5000),
            '--cluster-require-full-coverage',
            options.requireFullCoverage === false ? 'no' : 'yes',
          ],
        }),
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

async function masterPortOf(replica: RedisServer): Promise<number> {
  const c = replica.client();
  try {
    const info = await c.info('replication');
    return Number(/^master_port:(\d+)/m.exec(info)?.[1] ?? -1);
  } finally {
    c.disconnect();
  }
}

async function waitReplicasSynced(replicas: readonly RedisServer[], timeoutMs: number): Promise<void> {
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
