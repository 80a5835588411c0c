/**
 * The Redis Cluster store in particular: a private three-master cluster, a gateway limiting
 * through it, how ioredis routes the script (by its first key's slot, auto-pipelined per node),
 * the first burst after start, and a master going away and coming back.
 */
import { randomUUID } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Plan } from '../../src/ratelimit/decision.js';
import { RedisStore } from '../../src/ratelimit/redis-store.js';
import { connectRedis } from '../../src/stores/redis.js';
import { startGateway } from '../helpers/gateway.js';
import { startRedisCluster, type RedisCluster } from '../helpers/redis-cluster.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const TIMEOUT = 2000;
const H = 3_600_000;

let cluster: RedisCluster;
let admins: Redis[];
let upstream: Upstream;

beforeAll(async () => {
  [cluster, upstream] = await Promise.all([startRedisCluster(), startUpstream()]);
  admins = cluster.nodes.map((n) => n.client());
}, 30_000);

afterAll(async () => {
  for (const a of admins ?? []) a.disconnect();
  await upstream?.close();
  await cluster?.close();
});

/** a stat summed over all nodes: `cmdstat_<name>` calls or `errorstat_<NAME>` count */
async function stat(section: 'commandstats' | 'errorstats', name: string): Promise<number> {
  const infos = await Promise.all(admins.map((a) => a.info(section)));
  const re = new RegExp(
    `^${section === 'commandstats' ? 'cmdstat' : 'errorstat'}_${name}:(?:calls|count)=(\\d+)`,
    'm',
  );
  return infos.reduce((sum, i) => sum + Number(re.exec(i)?.[1] ?? 0), 0);
}
const scriptCalls = async () =>
  (await stat('commandstats', 'evalsha')) + (await stat('commandstats', 'eval'));

/** index (into cluster.nodes) of the node holding `key`, or -1 */
async function holder(key: string): Promise<number> {
  const has = await Promise.all(admins.map((a) => a.exists(key).catch(() => 0)));
  return has.findIndex((x) => x === 1);
}

/** the node serving each slot, from CLUSTER SLOTS */
async function slotOwner(): Promise<(slot: number) => number> {
  const slots = (await (admins[0] as Redis).cluster('SLOTS')) as unknown as Array<
    [number, number, [string, number, ...unknown[]]]
  >;
  const ports = cluster.nodes.map((n) => n.port);
  return (slot) => {
    const range = slots.find(([lo, hi]) => slot >= lo && slot <= hi);
    if (!range) throw new Error(`slot ${slot} not served`);
    return ports.indexOf(range[2][1]);
  };
}

const keySlot = async (key: string) => Number(await (admins[0] as Redis).cluster('KEYSLOT', key));

/** `count` subjects' keys (`<prefix>{rl:t:sN}`) for each node, found with CLUSTER KEYSLOT */
async function keysPerNode(prefix: string, count: number): Promise<string[][]> {
  const owner = await slotOwner();
  const out: string[][] = cluster.nodes.map(() => []);
  for (let i = 0; out.some((ks) => ks.length < count); i++) {
    if (i > 10_000) throw new Error('could not spread subjects over the nodes');
    const key = `${prefix}{rl:t:s${i}}`;
    const ks = out[owner(await keySlot(key))] as string[];
    if (ks.length < count) ks.push(key);
  }
  return out;
}

const plan: Plan = {
  tier: 't',
  limits: [
    { requests: 1000, windowMs: 1000, name: '1s' },
    { requests: 5000, windowMs: H, name: '1h' },
  ],
  quota: { requests: 100_000, per: 'month' },
};

describe('a gateway on a Redis Cluster', () => {
  it('admits exactly N of a burst, counting in the cluster', async () => {
    const prefix = `test:${randomUUID()}:`;
    const gw = await startGateway(`
redis: { cluster: [${cluster.urls.map((u) => `"${u}"`).join(', ')}], timeout: 1s }
rateLimit:
  onStoreError: closed   # a store failure would show as 503s, never as a wrong count
  keyPrefix: "${prefix}"
  tiers:
    anonymous: { limits: [{ requests: 7, per: 1h }] }
services:
  echo: { targets: ["${upstream.url}"] }
routes:
  - { name: limited, match: { path: /limited/** }, service: echo, rateLimit: ip }
`);
    try {
      const before = await scriptCalls();
      const results = await Promise.all(Array.from({ length: 40 }, () => fetch(`${gw.url}/limited/x`)));
      await Promise.all(results.map((r) => r.arrayBuffer()));
      const statuses = results.map((r) => r.status);
      expect(statuses.filter((s) => s === 200)).toHaveLength(7);
      expect(statuses.filter((s) => s === 429)).toHaveLength(33);
      // one script call per request, all in the cluster
      expect((await scriptCalls()) - before).toBe(40);
      const key = `${prefix}{rl:anonymous:ip:127.0.0.1}:1h`;
      const node = await holder(key);
      expect(node).toBeGreaterThanOrEqual(0);
      expect(await (admins[node] as Redis).hget(key, 'c')).toBe('7');
      expect(await (admins[node] as Redis).pttl(key)).toBeGreaterThan(0);
    } finally {
      await gw.close();
    }
  });
});

describe('the cluster store', () => {
  it('is ready with every master connected, so the first burst after start does not fail', async () => {
    const client = connectRedis({ cluster: [...cluster.urls], timeout: TIMEOUT }) as Cluster;
    const store = new RedisStore(client);
    try {
      expect(store.kind).toBe('redis-cluster');
      expect(await store.ready(5000)).toBe(true);
      expect(client.status).toBe('ready');
      expect(client.nodes('master').map((n) => n.status)).toEqual(cluster.nodes.map(() => 'ready'));
      // requests arriving over several event-loop turns, to every node
      const keys = (await keysPerNode(`test:${randomUUID()}:`, 5)).flat();
      const pending = [];
      for (const key of keys) {
        pending.push(store.consume(key, plan));
        await new Promise((r) => setImmediate(r));
      }
      const decisions = await Promise.all(pending);
      expect(decisions.map((d) => d.outcome)).toEqual(keys.map(() => 'allowed'));
    } finally {
      await store.close();
    }
  });

  it.each([true, false])(
    'routes each call to the node of its first key (auto-pipelining %s): one EVALSHA, no MOVED',
    async (autoPipelining) => {
      const client = connectRedis({
        cluster: [...cluster.urls],
        timeout: TIMEOUT,
        autoPipelining,
      }) as Cluster;
      expect(client.options.enableAutoPipelining).toBe(autoPipelining);
      const store = new RedisStore(client);
      try {
        expect(await store.ready(5000)).toBe(true);
        const prefix = `test:${randomUUID()}:`;
        const perNode = await keysPerNode(prefix, 22);
        // warm up: the first call on each connection is an EVAL that loads the script
        await Promise.all(perNode.map((ks) => store.consume(ks[0] as string, plan)));
        const [evalsha, moved] = [await stat('commandstats', 'evalsha'), await stat('errorstats', 'MOVED')];
        // 64 concurrent calls for subjects on all three nodes (one pipeline per node when on)
        const keys = perNode.flat().slice(0, 64);
        const decisions = await Promise.all(keys.map((k) => store.consume(k, plan)));
        expect(decisions.every((d) => d.outcome === 'allowed')).toBe(true);
        expect((await stat('commandstats', 'evalsha')) - evalsha).toBe(keys.length);
        expect((await stat('errorstats', 'MOVED')) - moved).toBe(0);
        // every subject's keys on the node serving its hash tag's slot, all in one slot
        const owner = await slotOwner();
        for (const [node, ks] of perNode.entries()) {
          for (const k of ks.filter((x) => keys.includes(x))) {
            const all = [`${k}:1s`, `${k}:1h`, `${k}:q:month`];
            const slots = await Promise.all(all.map(keySlot));
            expect(new Set(slots).size).toBe(1);
            expect(owner(slots[0] as number)).toBe(node);
            expect(await Promise.all(all.map(holder))).toEqual([node, node, node]);
          }
        }
      } finally {
        await store.close();
      }
    },
  );

  it('spreads different subjects over the masters', async () => {
    const store = new RedisStore(connectRedis({ cluster: [...cluster.urls], timeout: TIMEOUT }));
    try {
      expect(await store.ready(5000)).toBe(true);
      const prefix = `test:${randomUUID()}:`;
      // fixed subject names: the slot depends only on the hash tag, so this is deterministic
      const keys = Array.from({ length: 30 }, (_, i) => `${prefix}{rl:anonymous:ip:10.0.0.${i}}`);
      await Promise.all(keys.map((k) => store.consume(k, plan)));
      const nodes = await Promise.all(keys.map((k) => holder(`${k}:1h`)));
      expect(nodes.every((n) => n >= 0)).toBe(true);
      expect(new Set(nodes).size).toBe(cluster.nodes.length);
    } finally {
      await store.close();
    }
  });
});

// Last: it stops a master (and restarts it).
describe('a master going away', () => {
  it('fails fast for its slots only, and recovers by itself when it is back', async () => {
    const client = connectRedis({ cluster: [...cluster.urls], timeout: 200 }) as Cluster;
    const store = new RedisStore(client);
    try {
      expect(await store.ready(5000)).toBe(true);
      const [down, ...up] = await keysPerNode(`test:${randomUUID()}:`, 3);
      const node = cluster.nodes[0];
      if (!node || !down) throw new Error('no node');
      await node.stop();
      // the stopped node's subjects fail (the failure policy applies) within the timeout; the
      // others are still limited by Redis (until the cluster declares itself down, after the
      // node timeout of 5 s)
      const started = Date.now();
      const results = await Promise.allSettled(down.map((k) => store.consume(k, plan)));
      expect(results.map((r) => r.status)).toEqual(down.map(() => 'rejected'));
      expect(Date.now() - started).toBeLessThan(1000); // generous: the timeout is 200 ms
      const alive = await Promise.all(up.flat().map((k) => store.consume(k, plan)));
      expect(alive.every((d) => d.outcome === 'allowed')).toBe(true);

      await node.restart();
      // no new client, no reconnect by hand: the slot map refresh finds the node again
      const deadline = Date.now() + 20_000;
      let recovered = false;
      while (!recovered && Date.now() < deadline) {
        const rs = await Promise.allSettled([...down, ...up.flat()].map((k) => store.consume(k, plan)));
        recovered = rs.every((r) => r.status === 'fulfilled');
        if (!recovered) await new Promise((r) => setTimeout(r, 100));
      }
      expect(recovered).toBe(true);
    } finally {
      await store.close();
    }
  }, 40_000);
});
