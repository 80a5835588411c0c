/**
 * One gateway process: the data plane and the admin port around one runtime, and its
 * lifecycle: listen → ready → (SIGTERM) draining: /readyz 503, stop accepting, let in-flight
 * requests finish within `shutdown.drainTimeout` → closed.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdminServer } from '../admin/admin-server.js';
import { createKeysAdmin, type KeysAdmin } from '../admin/keys.js';
import { ApiKeyAuthenticator } from '../auth/api-keys/authenticator.js';
import { authReadiness } from '../auth/index.js';
import { loadConfigFile, type LoadResult } from '../config/load.js';
import { formatProblem, type ConfigProblem } from '../config/problems.js';
import type { GatewayConfig } from '../config/schema.js';
import { silentLogger, type Logger } from '../observability/logger.js';
import { AccessLog } from '../observability/access-log/index.js';
import { GatewayMetrics } from '../observability/metrics.js';
import { PortEvents } from '../observability/port-events.js';
import { RequestObserver } from '../observability/request-observer.js';
import { Tracing } from '../observability/tracing/index.js';
import { createDataPlane, type DataPlaneState } from './data-plane.js';
import { clusterMetricsSource } from './cluster-metrics.js';
import { watchConfigFile, type ConfigWatcher } from './config-watch.js';
import { closeRuntime, compileRuntime, readyRuntime, type Runtime } from './runtime.js';

export type GatewayOptions = {
  logger?: Logger;
  /** the file the config came from: `POST /reload` and SIGHUP re-read it */
  configFile?: string;
  /** called after a reload through the admin API succeeded (workers: tell the others) */
  onAdminReload?: () => void;
  /** a cluster worker: `/metrics` answers with every worker's metrics, aggregated by the primary */
  clusterMetrics?: boolean;
  /**
   * reload when `configFile` changes, if the config's `configWatch` is on (config-watch.ts). The
   * CLI asks for it in a single process; with `workers` the primary watches and sends SIGHUP.
   */
  watchConfig?: boolean;
};

/** What asked for a reload (it is in the log lines). */
export type ReloadTrigger = 'admin' | 'SIGHUP' | 'watch';

export type ReloadResult =
  | { ok: true; restartNeeded: string[] }
  /** the file is invalid: nothing was built */
  | { ok: false; reason: 'invalid_config'; problems: ConfigProblem[] }
  /** the new config could not be put to work; what it built is closed again */
  | { ok: false; reason: 'reload_failed'; detail: string };

/** Settings a reload cannot change in a running process (they are reported, not applied). */
const RESTART_ONLY = [
  'listen',
  'admin.host',
  'admin.port',
  'workers',
  'configWatch',
  'limits.headersTimeout',
  'limits.requestTimeout',
  'limits.keepAliveTimeout',
  'limits.maxHeaderSize',
  'logging.access',
  'tracing',
] as const;

/** How long shutdown waits for buffered access logs and spans to be shipped. */
const FLUSH_TIMEOUT_MS = 5000;

export class Gateway {
  private readonly state: DataPlaneState;
  private readonly data: Server;
  private readonly admin: Server;
  private closing: Promise<void> | null = null;

  private reloading: Promise<ReloadResult> | null = null;
  private watcher: ConfigWatcher | null = null;
  /** runtimes replaced by a reload, closing once their in-flight requests are done */
  private readonly retiring = new Set<Promise<void>>();
  /** admin `/keys`; a revocation made here also drops the key from this process's cache */
  private readonly keys: KeysAdmin;
  /** one registry for the process's life: counters carry on across reloads */
  readonly metrics = new GatewayMetrics();
  /** access log and tracing live as long as the process (changes need a restart) */
  readonly accessLog: AccessLog;
  readonly tracing: Tracing;

  private constructor(
    config: GatewayConfig,
    readonly logger: Logger,
    private readonly configFile: string | undefined,
    private readonly onAdminReload: (() => void) | undefined,
    clusterMetrics = false,
  ) {
    this.accessLog = new AccessLog(config.logging.access, { logger, registry: this.metrics.registry });
    this.tracing = new Tracing(config.tracing, logger);
    if (this.tracing.exporting) this.metrics.watchTracing(() => this.tracing.stats());
    this.state = {
      runtime: compileRuntime(config, logger, this.metrics, this.tracing),
      draining: false,
      upgraded: new Set(),
      observer: new RequestObserver(this.metrics, this.accessLog, this.tracing),
      events: new PortEvents(this.metrics, logger),
    };
    this.data = createDataPlane(this.state);
    this.metrics.watchServices(() => this.state.runtime.services.values());
    this.keys = createKeysAdmin(
      () => this.state.runtime.config,
      logger,
      (id) => {
        const a = this.state.runtime.shared.authenticators.apiKey;
        if (a instanceof ApiKeyAuthenticator) a.invalidate(id);
      },
    );
    this.admin = createAdminServer({
      token: () => this.state.runtime.config.admin.token,
      draining: () => this.state.draining,
      metrics: this.metricsSource(clusterMetrics),
      checks: () => {
        const limiter = this.state.runtime.shared.rateLimiter;
        const checks: Record<string, boolean | 'degraded'> = { config: true };
        // degraded is still ready unless the policy is to refuse
        if (limiter)
          checks.rateLimitStore = !limiter.store.isUnavailable || limiter.store.policy !== 'closed';
        const { authenticators } = this.state.runtime.shared;
        return Object.assign(checks, authReadiness(authenticators, this.state.runtime.config.routes));
      },
      services: () => [...this.state.runtime.services.values()].map((s) => s.snapshot()),
      keys: this.keys,
      handlerFailed: (err, requestId) => this.state.events.handlerFailed('admin', err, requestId),
      reload:
        this.configFile === undefined
          ? null
          : () =>
              this.reload().then((result) => {
                if (result.ok) this.onAdminReload?.();
                return result;
              }),
    });
  }

  /** What `/metrics` serves: this process's registry, or the cluster's total. */
  private metricsSource(cluster: boolean): () => Promise<{ contentType: string; body: string }> {
    const registry = this.metrics.registry;
    const local = async () => ({ contentType: registry.contentType, body: await registry.metrics() });
    if (!cluster) return local;
    const aggregated = clusterMetricsSource(registry);
    return () =>
      aggregated().then(
        (body) => ({ contentType: registry.contentType, body }),
        (err: Error) => {
          this.logger.warn({ err }, 'cluster metrics unavailable; serving this worker only');
          return local();
        },
      );
  }

  static async start(config: GatewayConfig, options: GatewayOptions = {}): Promise<Gateway> {
    const gw = new Gateway(
      config,
      options.logger ?? silentLogger(),
      options.configFile,
      options.onAdminReload,
      options.clusterMetrics,
    );
    // The watcher starts now, so that the content it compares changes with is the one just loaded
    // (read within milliseconds of the load); what it sees before the gateway is up waits for it.
    let started = (): void => undefined;
    const up = new Promise<void>((resolve) => (started = resolve));
    if (options.watchConfig && options.configFile !== undefined && config.configWatch) {
      gw.watcher = watchConfigFile(options.configFile, {
        logger: gw.logger,
        reload: () => up.then(() => gw.reloadFromWatch()),
      });
    }
    try {
      // bounded: an unreachable Redis means starting degraded (by policy), not hanging
      await readyRuntime(gw.state.runtime);
      await listen(gw.data, config.listen.host, config.listen.port);
      await listen(gw.admin, config.admin.host, config.admin.port);
    } catch (err) {
      await gw.abandon();
      throw err;
    }
    started();
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

  /** open client connections on the proxy port (for tests and diagnostics) */
  connectionCount(): Promise<number> {
    return new Promise((resolve, reject) =>
      this.data.getConnections((err, n) => (err ? reject(err) : resolve(n))),
    );
  }

  get draining(): boolean {
    return this.state.draining;
  }

  /**
   * Re-reads the config file and swaps the whole runtime (routes, services, stages) at once:
   * requests already in flight finish on the old one, whose pools then close. What did not change
   * is taken over (runtime.ts). An invalid file, or a new runtime that fails to get ready, is
   * refused: the running config is kept, what the attempt built is closed, and the failure is
   * logged and counted. Never rejects (once started from a file).
   */
  reload(trigger: ReloadTrigger = 'admin'): Promise<ReloadResult> {
    this.reloading ??= this.doReload(trigger).finally(() => (this.reloading = null));
    return this.reloading;
  }

  /**
   * The watcher saw new content: a reload already running (SIGHUP, admin) may have read the file
   * before it changed, so wait for it to end rather than join it, then read the file again.
   */
  private async reloadFromWatch(): Promise<ReloadResult> {
    while (this.reloading) await this.reloading;
    return this.reload('watch');
  }

  private async doReload(trigger: ReloadTrigger): Promise<ReloadResult> {
    if (this.configFile === undefined) throw new Error('this gateway was not started from a file');
    let result: LoadResult;
    try {
      result = await loadConfigFile(this.configFile);
    } catch (err) {
      return this.reloadFailed(trigger, err);
    }
    if (!result.ok) {
      this.metrics.configReloads.labels('failure').inc();
      this.logger.warn(
        { trigger, problems: result.problems.map(formatProblem) },
        'config reload rejected; keeping the running config',
      );
      return { ok: false, reason: 'invalid_config', problems: result.problems };
    }
    if (this.state.draining) return { ok: true, restartNeeded: [] };
    const old = this.state.runtime;
    let next: Runtime;
    try {
      next = compileRuntime(result.config, this.logger, this.metrics, this.tracing, old);
    } catch (err) {
      return this.reloadFailed(trigger, err); // compileRuntime closed what it built
    }
    try {
      await readyRuntime(next, old);
    } catch (err) {
      await this.discard(next, old);
      return this.reloadFailed(trigger, err);
    }
    if (this.state.draining) {
      // shut down meanwhile: the running runtime is being closed; close what this one added
      await this.discard(next, old);
      return { ok: true, restartNeeded: [] };
    }
    this.state.runtime = next;
    this.logger.level = result.config.logging.level;
    const restartNeeded = RESTART_ONLY.filter(
      (key) => JSON.stringify(pick(old.config, key)) !== JSON.stringify(pick(result.config, key)),
    );
    if (restartNeeded.length > 0)
      this.logger.warn({ restartNeeded }, 'these settings change only on restart');
    this.metrics.configReloads.labels('success').inc();
    this.logger.info({ trigger, routes: result.config.routes.length }, 'config reloaded');
    const retired = this.discard(old, next).finally(() => this.retiring.delete(retired));
    this.retiring.add(retired);
    return { ok: true, restartNeeded };
  }

  /** Closes what `rt` holds and `keep` does not; a failure to close is logged, not thrown. */
  private discard(rt: Runtime, keep: Runtime): Promise<void> {
    return closeRuntime(rt, keep).catch((err: unknown) =>
      this.logger.warn({ err }, 'closing a runtime that is no longer used failed'),
    );
  }

  private reloadFailed(trigger: ReloadTrigger, err: unknown): ReloadResult {
    const reason = err instanceof Error ? err.message : String(err);
    this.metrics.configReloads.labels('failure').inc();
    this.logger.error({ trigger, reason }, 'config reload failed; keeping the running config');
    return { ok: false, reason: 'reload_failed', detail: reason };
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
    this.watcher?.close();
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
      for (const socket of this.state.upgraded) socket.destroy();
      await closed;
    }
    // a reload in progress either swapped already or closes what it built itself
    await this.reloading?.catch(() => undefined);
    await Promise.all([closeRuntime(this.state.runtime), ...this.retiring]);
    // every request has ended: its record is queued; ship what is buffered, then stop
    await Promise.all([this.accessLog.close(FLUSH_TIMEOUT_MS), this.tracing.shutdown(FLUSH_TIMEOUT_MS)]);
    await this.keys.close();
    this.admin.closeAllConnections();
    await new Promise<void>((resolve) => this.admin.close(() => resolve()));
    this.logger.info('stopped');
  }

  /**
   * A gateway whose start failed: close what it built (runtime, access log, tracing, ports that
   * listen already), so that nothing outlives the failed start.
   */
  private async abandon(): Promise<void> {
    this.watcher?.close();
    await closeRuntime(this.state.runtime);
    await Promise.all([this.accessLog.close(0), this.tracing.shutdown(0), this.keys.close()]);
    for (const server of [this.data, this.admin]) {
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }
}

function pick(config: GatewayConfig, path: string): unknown {
  return path.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], config);
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
