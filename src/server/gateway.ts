/**
 * One gateway process: the data plane and the admin port around one runtime, and its
 * lifecycle: listen → ready → (SIGTERM) draining: /readyz 503, keep accepting for
 * `shutdown.acceptGrace` (the load balancer is still sending), stop accepting, let in-flight
 * requests finish within `shutdown.drainTimeout` → closed.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdminServer, type AdminControl } from '../admin/admin-server.js';
import { createKeysAdmin, type KeysAdmin } from '../admin/keys.js';
import { tokenRevocations } from '../auth/index.js';
import { loadConfigFile, type LoadResult } from '../config/load.js';
import { formatProblem, type ConfigProblem } from '../config/problems.js';
import type { GatewayConfig } from '../config/schema.js';
import { silentLogger, type Logger } from '../observability/logger.js';
import { AccessLog } from '../observability/access-log/index.js';
import { GatewayMetrics } from '../observability/metrics.js';
import { PortEvents } from '../observability/port-events.js';
import { RequestObserver } from '../observability/request-observer.js';
import { startupMark } from '../observability/startup-timing.js';
import { Tracing } from '../observability/tracing/index.js';
import { buildInfo } from './build-info.js';
import type { DataPlaneState } from './data-plane.js';
import { DataPlaneListeners } from './protocols/listeners.js';
import { watchConfigFile, type ConfigWatcher } from './config-watch.js';
import { closeRuntime, compileRuntime, readyRuntime, runtimeReadiness, type Runtime } from './runtime.js';

export type GatewayOptions = {
  logger?: Logger;
  /** the file the config came from: `POST /reload` and SIGHUP re-read it */
  configFile?: string;
  /** a cluster worker: what the primary does for the whole group (cluster-worker.ts) */
  cluster?: ClusterLink;
  /** the environment `shutdown.acceptGrace: auto` looks at (default `process.env`) */
  env?: NodeJS.ProcessEnv;
  /**
   * reload when `configFile` changes, if the config's `configWatch` is on (config-watch.ts). The
   * CLI asks for it in a single process; with `workers` the primary watches and reloads them all.
   */
  watchConfig?: boolean;
  /** admin controls to apply before listening (a worker started after they were made) */
  controls?: readonly AdminControl[];
};

/**
 * A worker's view of its primary. The primary owns the config: a reload asked for here (admin
 * API) is done by the primary for every worker, and answered when all of them have it.
 */
export type ClusterLink = {
  reload(trigger: ReloadTrigger): Promise<ReloadResult>;
  /** every worker's metrics, aggregated by the primary */
  metrics(): Promise<string>;
  /** whether every worker is ready (the primary's view): `/readyz` answers the same on all */
  ready(): boolean;
  /** applies an admin control to every worker (through the primary); resolves with how many did */
  control(change: AdminControl): Promise<number>;
  /** the number of workers */
  readonly workers: number;
};

/** Outcome of getting a config ready without swapping it in (`Gateway.prepare`). */
export type PrepareResult = { ok: true } | { ok: false; detail: string };

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
export const FLUSH_TIMEOUT_MS = 5000;

/** `shutdown.acceptGrace: auto` under Kubernetes (where KUBERNETES_SERVICE_HOST is set). */
export const KUBERNETES_ACCEPT_GRACE_MS = 5000;

/**
 * The accept grace in ms: a duration as configured; `auto` is 5 s in a Kubernetes pod (the
 * endpoints controller and every node's proxy take a few seconds to stop sending to a pod that
 * is terminating) and 0 elsewhere.
 */
export function acceptGraceMs(setting: number | 'auto', env: NodeJS.ProcessEnv = process.env): number {
  if (setting !== 'auto') return setting;
  return env.KUBERNETES_SERVICE_HOST ? KUBERNETES_ACCEPT_GRACE_MS : 0;
}

export class Gateway {
  private readonly state: DataPlaneState;
  /** the proxy port (and the cleartext one beside HTTPS): protocols/listeners.ts */
  private readonly data: DataPlaneListeners;
  private readonly admin: Server;
  /** the certificates' re-read of the last reload (awaited by it) */
  private certificatesReloaded: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | null = null;

  private reloading: Promise<ReloadResult> | null = null;
  private watcher: ConfigWatcher | null = null;
  /** a runtime got ready by `prepare`, waiting for `commit` or `abort` (cluster reloads) */
  private prepared: { runtime: Runtime; config: GatewayConfig } | null = null;
  /** a `prepare` in progress (the drain waits for it) */
  private preparing: Promise<void> | undefined;
  /** runtimes replaced by a reload, closing once their in-flight requests are done */
  private readonly retiring = new Set<Promise<void>>();
  /** admin `/keys`; a revocation made here also drops the key from this process's cache */
  private readonly keys: KeysAdmin;
  /** `POST /drain`: readiness fails while serving goes on (not a shutdown) */
  private manualDrain = false;
  private readonly startedAt = Date.now();
  private configLoadedAt = Date.now();
  /** one registry for the process's life: counters carry on across reloads */
  readonly metrics = new GatewayMetrics();
  /** access log and tracing live as long as the process (changes need a restart) */
  readonly accessLog: AccessLog;
  readonly tracing: Tracing;

  private constructor(
    config: GatewayConfig,
    readonly logger: Logger,
    private readonly configFile: string | undefined,
    private readonly cluster: ClusterLink | undefined,
    private readonly env: NodeJS.ProcessEnv,
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
    this.data = new DataPlaneListeners(this.state, this.metrics, logger);
    this.metrics.watchServices(() => this.state.runtime.services.values());
    this.metrics.watchRevocation(() => tokenRevocations(this.state.runtime.authenticators)?.stats() ?? null);
    this.keys = createKeysAdmin(
      () => this.state.runtime.config,
      (id) => this.state.runtime.authenticators.apiKey?.invalidate?.(id),
    );
    this.admin = createAdminServer({
      tokens: () => this.state.runtime.config.admin,
      // a worker answers for the group: the primary says when it is not ready (a stop, a worker
      // starting or draining alone), so that /readyz does not depend on which worker answers;
      // a manual drain is applied to every worker, so any of them answers it
      draining: () => this.manualDrain || (this.cluster === undefined && this.state.draining),
      runtime: () => this.state.runtime,
      logger: () => this.logger,
      auditEntries: () => this.state.runtime.config.admin.auditEntries,
      ui: () => this.state.runtime.config.admin.ui,
      process: () => ({
        ...buildInfo(),
        startedAt: this.startedAt,
        configLoadedAt: this.configLoadedAt,
        workers: {
          count: this.cluster?.workers ?? 1,
          mode: this.cluster ? 'cluster' : 'single',
          pid: process.pid,
        },
      }),
      control: (change) =>
        this.cluster ? this.cluster.control(change) : Promise.resolve(this.control(change)),
      metrics: this.metricsSource(),
      checks: () => {
        const checks: Record<string, boolean | 'degraded'> = { config: true };
        // every worker answers with the group's readiness: all N up, no stop begun
        if (this.cluster) checks.workers = this.cluster.ready();
        return Object.assign(checks, runtimeReadiness(this.state.runtime));
      },
      services: () => [...this.state.runtime.services.values()].map((s) => s.snapshot()),
      keys: this.keys,
      revocations: {
        list: () => tokenRevocations(this.state.runtime.authenticators),
        revoked: (kind) => this.metrics.tokensRevoked.labels(kind).inc(),
      },
      handlerFailed: (err, requestId) => this.state.events.handlerFailed('admin', err, requestId),
      reload: this.configFile === undefined && this.cluster === undefined ? null : () => this.reload(),
    });
  }

  /**
   * Applies an admin control to this process (a worker gets it from its primary, for every
   * worker): 1 when applied. A log level lasts until the next reload; a disabled target or a
   * reset breaker until the service is rebuilt (a reload that changes its settings).
   */
  control(change: AdminControl): number {
    switch (change.kind) {
      case 'logLevel':
        this.logger.level = change.level;
        return 1;
      case 'drain':
        this.manualDrain = change.on;
        this.state.drainRequested = change.on;
        return 1;
      case 'target':
        return this.state.runtime.services
          .get(change.service)
          ?.setTargetEnabled(change.target, change.enabled)
          ? 1
          : 0;
      case 'breakerReset': {
        const service = this.state.runtime.services.get(change.service);
        service?.resetBreaker();
        return service ? 1 : 0;
      }
    }
  }

  /** What `/metrics` serves: this process's registry, or the cluster's total. */
  private metricsSource(): () => Promise<{ contentType: string; body: string }> {
    const registry = this.metrics.registry;
    const local = async () => ({ contentType: registry.contentType, body: await registry.metrics() });
    const cluster = this.cluster;
    if (cluster === undefined) return local;
    return () =>
      cluster.metrics().then(
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
      options.cluster,
      options.env ?? process.env,
    );
    startupMark('runtime compiled, ports created');
    for (const change of options.controls ?? []) gw.control(change);
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
      startupMark('runtime ready');
      await gw.data.prepare();
      await gw.data.listen();
      await listen(gw.admin, config.admin.host, config.admin.port);
      startupMark('listening');
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
    return this.data.port;
  }

  /** the cleartext listener beside HTTPS (`listen.plain`), or null */
  get plainPort(): number | null {
    return this.data.plainPort;
  }

  get adminPort(): number {
    return (this.admin.address() as AddressInfo).port;
  }

  /** open client connections on the proxy port (for tests and diagnostics) */
  connectionCount(): Promise<number> {
    return this.data.connectionCount();
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
    // a worker: the primary reloads every worker and answers once all have the new config
    const cluster = this.cluster;
    this.reloading ??= (cluster ? cluster.reload(trigger) : this.doReload(trigger)).finally(
      () => (this.reloading = null),
    );
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
    const old = this.state.runtime.config;
    const prepared = await this.prepare(result.config);
    if (!prepared.ok) return this.reloadFailed(trigger, new Error(prepared.detail));
    if (!this.commit()) return { ok: true, restartNeeded: [] }; // shut down meanwhile
    await this.certificatesReloaded;
    const needed = restartNeeded(old, result.config);
    if (needed.length > 0)
      this.logger.warn({ restartNeeded: needed }, 'these settings change only on restart');
    this.metrics.configReloads.labels('success').inc();
    this.logger.info({ trigger, routes: result.config.routes.length }, 'config reloaded');
    return { ok: true, restartNeeded: needed };
  }

  /**
   * First half of a reload: compiles `config` from the running runtime and gets it ready, without
   * swapping it in. A failure closes what it built and keeps the running config. The cluster
   * primary prepares every worker before it commits any, so that workers never disagree.
   */
  prepare(config: GatewayConfig): Promise<PrepareResult> {
    const run = this.doPrepare(config);
    const settled = run.then(() => undefined);
    this.preparing = settled;
    void settled.finally(() => {
      if (this.preparing === settled) this.preparing = undefined;
    });
    return run;
  }

  private async doPrepare(config: GatewayConfig): Promise<PrepareResult> {
    await this.abort();
    if (this.state.draining) return { ok: true }; // nothing to swap into
    const old = this.state.runtime;
    let next: Runtime;
    try {
      next = compileRuntime(config, this.logger, this.metrics, this.tracing, old);
    } catch (err) {
      return { ok: false, detail: errorText(err) }; // compileRuntime closed what it built
    }
    try {
      await readyRuntime(next, old);
    } catch (err) {
      await this.discard(next, old);
      return { ok: false, detail: errorText(err) };
    }
    if (this.state.draining) {
      await this.discard(next, old); // shut down meanwhile
      return { ok: true };
    }
    this.prepared = { runtime: next, config };
    return { ok: true };
  }

  /**
   * Second half: swaps the prepared runtime in (requests in flight finish on the old one, which
   * then closes). False when there was nothing to swap (draining: what was prepared is closed).
   */
  commit(): boolean {
    const prepared = this.prepared;
    this.prepared = null;
    if (prepared === null) return false;
    const old = this.state.runtime;
    if (this.state.draining) {
      // shut down meanwhile: the running runtime is being closed; close what this one added
      const dropped = this.discard(prepared.runtime, old).finally(() => this.retiring.delete(dropped));
      this.retiring.add(dropped);
      return false;
    }
    this.state.runtime = prepared.runtime;
    this.configLoadedAt = Date.now();
    this.logger.level = prepared.config.logging.level;
    // every reload re-reads the TLS certificates (renewed ones are taken without a restart)
    this.certificatesReloaded = this.data.reloadCertificates('reload');
    const retired = this.discard(old, prepared.runtime).finally(() => this.retiring.delete(retired));
    this.retiring.add(retired);
    return true;
  }

  /** Drops what `prepare` got ready (another worker could not prepare). */
  async abort(): Promise<void> {
    const prepared = this.prepared;
    this.prepared = null;
    if (prepared !== null) await this.discard(prepared.runtime, this.state.runtime);
  }

  /** Closes what `rt` holds and `keep` does not; a failure to close is logged, not thrown. */
  private discard(rt: Runtime, keep: Runtime): Promise<void> {
    return closeRuntime(rt, keep).catch((err: unknown) =>
      this.logger.warn({ err }, 'closing a runtime that is no longer used failed'),
    );
  }

  private reloadFailed(trigger: ReloadTrigger, err: unknown): ReloadResult {
    const reason = errorText(err);
    this.metrics.configReloads.labels('failure').inc();
    this.logger.error({ trigger, reason }, 'config reload failed; keeping the running config');
    return { ok: false, reason: 'reload_failed', detail: reason };
  }

  /**
   * Graceful shutdown. `/readyz` turns 503 at once and responses carry `Connection: close`; for
   * the accept grace the proxy port still accepts and serves (a load balancer takes a moment to
   * see the 503, and Kubernetes to take the pod out of its endpoints: connections arriving
   * meanwhile must not be refused). Then the listener closes; idle keep-alive connections are
   * closed at once and again every 100 ms (a connection whose response started before the drain
   * goes idle later). After the drain timeout, what is left is cut.
   */
  shutdown(
    drainTimeout = this.config.shutdown.drainTimeout,
    acceptGrace = acceptGraceMs(this.config.shutdown.acceptGrace, this.env),
  ): Promise<void> {
    this.closing ??= this.drain(drainTimeout, acceptGrace);
    return this.closing;
  }

  private async drain(drainTimeout: number, acceptGrace: number): Promise<void> {
    this.state.draining = true;
    this.watcher?.close();
    this.logger.info({ acceptGrace, drainTimeout }, 'draining');
    if (acceptGrace > 0) {
      await new Promise((resolve) => setTimeout(resolve, acceptGrace));
      this.logger.info('accept grace over; closing the proxy listener');
    }
    const closed = this.data.close();
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
    await this.preparing;
    await this.abort();
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
    await this.data.close();
    if (this.admin.listening) await new Promise<void>((resolve) => this.admin.close(() => resolve()));
  }
}

/** The settings that differ between `old` and `next` but change only on restart. */
export function restartNeeded(old: GatewayConfig, next: GatewayConfig): string[] {
  return RESTART_ONLY.filter((key) => JSON.stringify(pick(old, key)) !== JSON.stringify(pick(next, key)));
}

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

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
