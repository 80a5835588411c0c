/**
 * Connections to Redis: one node or a Cluster (ioredis), with fail-fast settings. ioredis is
 * loaded on the first connection: it is one of the costliest packages to load (~0.1–0.2 s of a
 * start), and a gateway without `redis`, or a CLI command, does not need it.
 */
import { createRequire } from 'node:module';
import type * as IORedis from 'ioredis';
import type { Cluster, Redis } from 'ioredis';

export type RedisSettings = {
  /**
   * The client's own command timeout: only a backstop that ends commands nobody waits for any
   * more. The rate limiter's timeout (`redis.timeout`) is enforced by its breaker.
   */
  timeout: number;
  autoPipelining?: boolean;
} & ({ url: string; cluster?: undefined } | { cluster: readonly string[]; url?: undefined });

export type RedisClient = Redis | Cluster;

/** a connection attempt that takes longer fails (ioredis's default is 10 s) */
const CONNECT_TIMEOUT_MS = 2000;

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

let ioredis: typeof IORedis | undefined;

/** ioredis, loaded once (synchronously: it is CommonJS, and the store is built synchronously). */
function loadIoredis(): typeof IORedis {
  if (ioredis === undefined) {
    try {
      ioredis = createRequire(import.meta.url)('ioredis') as typeof IORedis;
    } catch (err) {
      throw new Error(
        `redis: the ioredis package could not be loaded (${err instanceof Error ? err.message : String(err)}); ` +
          'reinstall the dependencies, or remove `redis` to count rate limits in memory',
        { cause: err },
      );
    }
  }
  return ioredis;
}

function connect(settings: RedisSettings): RedisClient {
  const io = loadIoredis();
  if (settings.cluster !== undefined) {
    const nodes = settings.cluster.map((u) => {
      const url = new URL(u);
      return { host: url.hostname, port: Number(url.port || 6379) };
    });
    const cluster = new io.Cluster(nodes, {
      // On: the client's own readiness check (CLUSTER INFO) goes to a master it has just
      // learnt of, whose connection is still being made; with the queue off that check fails
      // ("Connection is closed") and the client reconnects from the seeds forever whenever the
      // seeds are no longer all masters (after failovers). Commands for a node still connecting
      // wait for it instead of failing; the breaker's timeout bounds every wait, and the store
      // itself sends nothing while the cluster as a whole is not ready.
      enableOfflineQueue: true,
      // One pipeline per node per event-loop turn (commands are grouped by the node that
      // serves their first key's slot).
      enableAutoPipelining: settings.autoPipelining ?? true,
      // ioredis retries a command whose node connection is closed, or whose cluster is down,
      // after 100 ms (up to 16 times), outside any timeout. Fail at once instead (the breaker
      // probes and follows the failover); MOVED/ASK redirections are still followed at once.
      retryDelayOnFailover: 0,
      retryDelayOnClusterDown: 0,
      retryDelayOnTryAgain: 0,
      // ...which is also what refreshed the slot map after a node was lost. Refresh it
      // periodically instead (and the store refreshes it after an error), so a restarted node or
      // a promoted replica is found again: one CLUSTER SLOTS per interval.
      slotsRefreshInterval: 2000,
      redisOptions: {
        maxRetriesPerRequest: 0,
        commandTimeout: settings.timeout,
        connectTimeout: CONNECT_TIMEOUT_MS,
        // a script written before a connection dropped may have run: never send it again
        autoResendUnfulfilledCommands: false,
      },
      clusterRetryStrategy: (times) => Math.min(100 * 2 ** times, 2000),
    });
    // Node connections are made lazily, on their first command: connect each node as soon as
    // it is known, so the first burst does not wait for the handshakes.
    cluster.on('+node', (node: Redis) => {
      if (node.status === 'wait') node.connect().catch(() => undefined);
    });
    return cluster;
  }
  return new io.Redis(settings.url, {
    // A request never waits for a reconnect: while Redis is away, commands fail at once and the
    // rate limiter's failure policy applies.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: settings.timeout,
    connectTimeout: CONNECT_TIMEOUT_MS,
    lazyConnect: false,
    enableAutoPipelining: settings.autoPipelining ?? false,
    // a script written before a connection dropped may have run: never send it again
    autoResendUnfulfilledCommands: false,
    retryStrategy: (times) => Math.min(50 * 2 ** times, 2000),
  });
}
