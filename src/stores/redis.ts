/** Connections to Redis: one node or a Cluster (ioredis), with fail-fast settings. */
import { Cluster, Redis } from 'ioredis';

export type RedisSettings =
  | { url: string; cluster?: undefined; timeout: number; autoPipelining?: boolean }
  | { cluster: readonly string[]; url?: undefined; timeout: number; autoPipelining?: boolean };

export type RedisClient = Redis | Cluster;

/**
 * Connection errors surface as failed commands, which the rate limiter's failure policy handles
 * and logs; without a listener ioredis would also print every reconnect error to stderr.
 */
const ignoreConnectionErrors = () => undefined;

export function connectRedis(settings: RedisSettings): RedisClient {
  const client = connect(settings);
  client.on('error', ignoreConnectionErrors);
  return client;
}

function connect(settings: RedisSettings): RedisClient {
  if (settings.cluster !== undefined) {
    const nodes = settings.cluster.map((u) => {
      const url = new URL(u);
      return { host: url.hostname, port: Number(url.port || 6379) };
    });
    const cluster = new Cluster(nodes, {
      // A command never waits for a reconnect: while the cluster (or the node owning a key's
      // slot) is away, it fails at once and the rate limiter's failure policy applies.
      enableOfflineQueue: false,
      // One pipeline per node per event-loop turn (commands are grouped by the node that
      // serves their first key's slot).
      enableAutoPipelining: settings.autoPipelining ?? true,
      // ioredis retries a command whose node connection is closed, or whose cluster is down,
      // after 100 ms (up to 16 times), outside the command timeout. Fail at once instead;
      // MOVED/ASK redirections are still followed immediately.
      retryDelayOnFailover: 0,
      retryDelayOnClusterDown: 0,
      retryDelayOnTryAgain: 0,
      // ...which is also what refreshed the slot map after a node was lost. Refresh it
      // periodically instead (and the store refreshes it after an error), so a restarted node or
      // a promoted replica is found again: one CLUSTER SLOTS per interval.
      slotsRefreshInterval: 2000,
      redisOptions: { maxRetriesPerRequest: 0, commandTimeout: settings.timeout },
      clusterRetryStrategy: (times) => Math.min(100 * 2 ** times, 2000),
    });
    // Node connections are made lazily, on their first command; while one is connecting,
    // commands to it are refused. Connect each node as soon as it is known instead.
    cluster.on('+node', (node: Redis) => {
      if (node.status === 'wait') node.connect().catch(() => undefined);
    });
    return cluster;
  }
  return new Redis(settings.url, {
    // A request never waits for a reconnect: while Redis is away, commands fail at once and the
    // rate limiter's failure policy applies.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: settings.timeout,
    lazyConnect: false,
    enableAutoPipelining: settings.autoPipelining ?? false,
    retryStrategy: (times) => Math.min(50 * 2 ** times, 2000),
  });
}
