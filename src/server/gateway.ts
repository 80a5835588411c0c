/**
 * One gateway process: the data plane and the admin port around one runtime, and its
 * lifecycle: listen → ready → (SIGTERM) draining: /readyz 503, stop accepting, let in-flight
 * requests finish within `shutdown.drainTimeout` → closed.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdminServer } from '../admin/admin-server.js';
import type { GatewayConfig } from '../config/schema.js';
import { silentLogger, type Logger } from '../observability/logger.js';
import { createDataPlane, type DataPlaneState } from './data-plane.js';
import { closeRuntime, compileRuntime } from './runtime.js';

export type GatewayOptions = { logger?: Logger };

export class Gateway {
  private readonly state: DataPlaneState;
  private readonly data: Server;
  private readonly admin: Server;
  private closing: Promise<void> | null = null;

  private constructor(
    config: GatewayConfig,
    readonly logger: Logger,
  ) {
    this.state = { runtime: compileRuntime(config), draining: false };
    this.data = createDataPlane(this.state);
    this.admin = createAdminServer({
      token: () => this.state.runtime.config.admin.token,
      draining: () => this.state.draining,
      checks: () => ({ config: true }),
    });
  }

  static async start(config: GatewayConfig, options: GatewayOptions = {}): Promise<Gateway> {
    const gw = new Gateway(config, options.logger ?? silentLogger());
    await listen(gw.data, config.listen.host, config.listen.port);
    await listen(gw.admin, config.admin.host, config.admin.port);
    gw.logger.info(
      { port: gw.port, adminPort: gw.adminPort, routes: config.routes.length },
      'gatehouse ready',
    );
    return gw;
  }

  get config(): GatewayConfig {
    return this.state.runtime.config;
  }

  get port(): number {
    return (this.data.address() as AddressInfo).port;
  }

  get adminPort(): number {
    return (this.admin.address() as AddressInfo).port;
  }

  get draining(): boolean {
    return this.state.draining;
  }

  /**
   * Graceful shutdown. Idle keep-alive connections are closed at once and again every 100 ms
   * (a connection whose response started before the drain goes idle later); responses sent
   * while draining carry `Connection: close`. After the drain timeout, what is left is cut.
   */
  shutdown(drainTimeout = this.config.shutdown.drainTimeout): Promise<void> {
    this.closing ??= this.drain(drainTimeout);
    return this.closing;
  }

  private async drain(drainTimeout: number): Promise<void> {
    this.state.draining = true;
    this.logger.info({ drainTimeout }, 'draining');
    const closed = new Promise<void>((resolve) => this.data.close(() => resolve()));
    this.data.closeIdleConnections();
    const sweep = setInterval(() => this.data.closeIdleConnections(), 100);
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>(
      (resolve) => (timer = setTimeout(() => resolve(true), drainTimeout)),
    );
    const expired = await Promise.race([closed.then(() => false), timedOut]);
    clearInterval(sweep);
    clearTimeout(timer);
    if (expired) {
      this.logger.warn('drain timeout reached; closing remaining connections');
      this.data.closeAllConnections();
      await closed;
    }
    await closeRuntime(this.state.runtime);
    this.admin.closeAllConnections();
    await new Promise<void>((resolve) => this.admin.close(() => resolve()));
    this.logger.info('stopped');
  }
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
