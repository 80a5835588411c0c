/**
 * A cluster worker (see cluster.ts): a whole gateway, run on the config its primary hands it and
 * driven by its primary. Order matters: signal handlers and the IPC listener go in before
 * anything else, then the worker says hello and gets its config, then starts the gateway and
 * reports ready.
 *
 * Signals: SIGTERM and SIGINT start the drain once (repeats, such as the primary's request after
 * a signal sent to the whole process group, change nothing); SIGHUP is ignored: reloads are the
 * primary's (a SIGHUP to the group reaches it too). A worker that has drained sends its final
 * metrics to the primary, then exits 0.
 */
import { releaseSignals } from './early-signals.js';
import { deepFreeze } from '../config/defaults.js';
import type { GatewayConfig } from '../config/schema.js';
import { createLogger, type Logger } from '../observability/logger.js';
import type { AdminControl } from '../admin/admin-server.js';
import type { Hello } from './cluster.js';
import type { MetricsReport } from './cluster-metrics.js';
import { Gateway, type ReloadResult, type ReloadTrigger } from './gateway.js';
import { IpcPeer } from './ipc.js';

/** The primary answers a reload once every worker has the new config: prepare is bounded by 30 s. */
const RELOAD_TIMEOUT_MS = 60_000;
/** The primary waits at most 1 s for each worker. */
const METRICS_TIMEOUT_MS = 5000;
const HELLO_TIMEOUT_MS = 30_000;
/** Every worker applies an admin control (log level, drain, target) within this time. */
const CONTROL_TIMEOUT_MS = 10_000;

export async function runWorker(): Promise<void> {
  const peer = new IpcPeer((msg) => {
    if (!process.connected || process.send === undefined) return false;
    process.send(msg, undefined, {}, () => undefined);
    return true;
  });
  process.on('message', (msg: unknown) => peer.receive(msg));
  process.on('disconnect', () => peer.close());

  let gateway: Gateway | null = null;
  let logger: Logger | null = null;
  let stopReason: string | null = null;
  let groupReady = false;

  const drain = (gw: Gateway, reason: string) => {
    logger?.info({ reason }, 'shutting down');
    peer.notify('draining');
    void gw.shutdown().then(async () => {
      const report = (await gw.metrics.registry.getMetricsAsJSON()) as MetricsReport;
      // exit once the report is written: the primary keeps this worker's counts
      await new Promise<void>((resolve) => {
        if (!process.connected || process.send === undefined) return resolve();
        process.send({ gatehouse: 'notice', name: 'final-metrics', payload: report }, undefined, {}, () =>
          resolve(),
        );
      });
      process.exit(0);
    });
  };
  const stop = (reason: string) => {
    if (stopReason !== null) return;
    stopReason = reason;
    groupReady = false;
    if (gateway !== null) drain(gateway, reason);
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', () => undefined);
  for (const signal of releaseSignals()) if (signal !== 'SIGHUP') stop(signal);

  peer.on('shutdown', () => stop('primary'));
  // the group's readiness, also while this worker drains alone (it is then being replaced)
  peer.on('readiness', (ready) => (groupReady = ready === true));
  peer.handle('collect', () => gateway?.metrics.registry.getMetricsAsJSON() ?? null);
  peer.handle('prepare', (payload) => {
    const { config } = payload as { config: GatewayConfig };
    if (gateway === null) return { ok: false, detail: 'not started' };
    return gateway.prepare(deepFreeze(config));
  });
  peer.handle('commit', () => {
    gateway?.commit();
    logger?.debug('config applied');
    return null;
  });
  peer.handle('abort', () => gateway?.abort() ?? null);
  peer.handle('control', (payload) => gateway?.control(payload as AdminControl) ?? 0);

  let hello: Hello;
  try {
    hello = await peer.call<Hello>('hello', null, HELLO_TIMEOUT_MS);
  } catch (err) {
    process.stderr.write(`gatehouse worker: no config from the primary: ${String(err)}\n`);
    process.exit(1);
  }
  if (hello.stopping || stopReason !== null) process.exit(0);
  const config = deepFreeze(hello.config);
  logger = createLogger(config.logging.level, { worker: true });
  try {
    gateway = await Gateway.start(config, {
      logger,
      cluster: {
        reload: (trigger: ReloadTrigger) => peer.call<ReloadResult>('reload', { trigger }, RELOAD_TIMEOUT_MS),
        metrics: () => peer.call<string>('metrics', null, METRICS_TIMEOUT_MS),
        ready: () => groupReady,
        control: (change: AdminControl) => peer.call<number>('admin-control', change, CONTROL_TIMEOUT_MS),
        workers: hello.workers,
      },
      controls: hello.controls as AdminControl[],
    });
  } catch (err) {
    logger.fatal({ err }, 'could not start');
    process.exit(1);
  }
  peer.notify('ready', { generation: hello.generation });
  if (stopReason !== null) drain(gateway, stopReason);
}
