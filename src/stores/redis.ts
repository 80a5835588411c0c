/** Connections to Redis: one node or a Cluster (ioredis), with fail-fast settings. */
import { Cluster, Redis } from 'ioredis';

export type RedisSettings =
  | { url: string; cluster?: undefined; timeout: number }
  | { cluster: readonly string[]; url?: undefined; timeout: number };

export type RedisClient = Redis | Cluster;

export function connectRedis(settings: RedisSettings): RedisClient {
  const common = {
    // A request never waits for a reconnect: while Redis is away, commands fail at once and the
    // rate limiter's failure policy applies.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: settings.timeout,
    lazyConnect: false,
  };
  if (settings.cluster !== undefined) {
    const nodes = settings.cluster.map((u) => {
      const url = new URL(u);
      return { host: url.hostname, port: Number(url.port || 6379) };
    });
    return new Cluster(nodes, {
      enableOfflineQueue: false,
      enableAutoPipelining: true,
      redisOptions: { maxRetriesPerRequest: 0, commandTimeout: settings.timeout },
      clusterRetryStrategy: (times) => Math.min(100 * 2 ** times, 2000),
    });
  }
  return new Redis(settings.url, {
    ...common,
    retryStrategy: (times) => Math.min(50 * 2 ** times, 2000),
  });
}
