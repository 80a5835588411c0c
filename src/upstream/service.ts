import { Pool } from 'undici';
import type { ServiceConfig } from '../config/schema.js';

/** One upstream instance and its keep-alive connection pool. */
export class Target {
  readonly pool: Pool;
  constructor(
    readonly origin: string,
    config: ServiceConfig,
  ) {
    this.pool = new Pool(origin, {
      connections: config.pool.connections,
      pipelining: 1,
      keepAliveTimeout: config.pool.keepAlive,
      keepAliveMaxTimeout: config.pool.keepAlive,
      connectTimeout: config.timeouts.connect,
      headersTimeout: config.timeouts.response,
      bodyTimeout: config.timeouts.response,
      strictContentLength: true,
    });
  }
}

/** An upstream service: its targets and how one is picked. */
export class Service {
  readonly targets: readonly Target[];
  private next = 0;

  constructor(
    readonly name: string,
    readonly config: ServiceConfig,
  ) {
    this.targets = config.targets.map((t) => new Target(new URL(t).origin, config));
  }

  /** Round-robin over the targets. */
  pick(): Target {
    const target = this.targets[this.next] as Target;
    this.next = this.next + 1 === this.targets.length ? 0 : this.next + 1;
    return target;
  }

  async close(): Promise<void> {
    await Promise.all(this.targets.map((t) => t.pool.close()));
  }

  destroy(): Promise<void> {
    return Promise.all(this.targets.map((t) => t.pool.destroy())).then(() => undefined);
  }
}
