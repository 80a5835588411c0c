/** One upstream instance: its keep-alive pool and what the gateway knows of its health. */
import { Pool } from 'undici';
import type { ServiceConfig } from '../config/schema.js';
import type { ActiveHealthCheck } from './active-health.js';
import { warmHttpParser } from './parser-warmup.js';
import type { PassiveState } from './passive-health.js';
import type { UpstreamConnect } from './tls.js';

export class Target implements PassiveState {
  readonly pool: Pool;
  /** "host:port", the label in metrics and the admin API */
  readonly address: string;
  /** requests sent and not finished (least-request balancing, admin API) */
  inflight = 0;
  consecutiveFailures = 0;
  ejections = 0;
  backAt = 0;
  /** while ejected: when the ejection ends (epoch ms); 0 = not ejected */
  ejectedUntil = 0;
  ejectionTimer: NodeJS.Timeout | null = null;
  check: ActiveHealthCheck | null = null;
  /** taken out of rotation by an operator (admin API): no traffic, not even in panic */
  disabled = false;
  /** `pool.connections`: more requests in flight than this wait in the pool's queue */
  readonly connections: number;

  constructor(
    readonly origin: string,
    config: ServiceConfig,
    connect: UpstreamConnect = {},
  ) {
    warmHttpParser();
    this.address = new URL(origin).host;
    this.connections = config.pool.connections;
    this.pool = new Pool(origin, {
      connections: config.pool.connections,
      pipelining: 1,
      keepAliveTimeout: config.pool.keepAlive,
      keepAliveMaxTimeout: config.pool.keepAlive,
      connectTimeout: config.timeouts.connect,
      headersTimeout: config.timeouts.response,
      bodyTimeout: config.timeouts.response,
      strictContentLength: true,
      ...connect,
    });
  }

  /** takes traffic: not ejected, and passing its active checks (if any) */
  get available(): boolean {
    return !this.disabled && this.ejectedUntil === 0 && (this.check === null || this.check.healthy);
  }
}
