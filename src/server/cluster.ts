/**
 * `workers: N | auto`: the primary process forks N workers (node:cluster), each a whole gateway;
 * the proxy and admin ports are shared. The primary serves nothing itself: it supervises.
 *
 * - **The config is the primary's.** It loaded the file before forking and hands that config to
 *   each worker over IPC (a worker never reads the file). A reload (SIGHUP to the primary, or
 *   `POST /reload` on any worker, which asks the primary) reads the file once, has every worker
 *   compile it and get it ready, and only when all succeeded has them swap it in (else all drop
 *   it): workers never disagree. A replacement worker gets the config the others run.
 * - **Signals go to the primary.** Workers ignore SIGHUP; SIGTERM/SIGINT make a worker drain
 *   once and ignore repeats, so `kill -TERM -- -<pgid>` (the whole process group, as systemd and
 *   many supervisors send) drains like a SIGTERM to the primary, which tells every worker to
 *   drain (over IPC, never a second signal) and exits 0 once they all have.
 * - **Workers are replaced**, after a delay that grows with repeated crashes; a crash loop (more
 *   crashes within a minute than max(5, N)) stops the primary with exit code 1, and so does a
 *   worker that cannot start the first time (a port in use, ...): a gateway that cannot start
 *   exits 1. A clean worker exit is logged at info and replaced without counting as a crash.
 * - **Scheduling**: `SCHED_NONE`, every worker accepts from the shared listening socket itself.
 *   With round-robin the primary accepts and hands each connection to a worker; one handed to a
 *   worker that has just died hangs until the client gives up.
 * - **Readiness is the group's**: `/readyz` on any worker is 200 only while all N workers are up
 *   and none drains (the primary tells every worker when that changes).
 * - **Metrics**: cluster-metrics.ts.
 */
import cluster, { type Worker } from 'node:cluster';
import { loadConfigFile, type LoadResult } from '../config/load.js';
import { formatProblem } from '../config/problems.js';
import type { GatewayConfig } from '../config/schema.js';
import type { Logger } from '../observability/logger.js';
import { PrimaryMetrics, type MetricsReport } from './cluster-metrics.js';
import { autoWorkers } from './cpu-limit.js';
import {
  acceptGraceMs,
  FLUSH_TIMEOUT_MS,
  restartNeeded,
  type PrepareResult,
  type ReloadResult,
  type ReloadTrigger,
} from './gateway.js';
import { IpcClosedError, IpcPeer } from './ipc.js';
import { DEFAULT_RESTART_POLICY, RestartPolicy, type RestartPolicyOptions } from './restart-policy.js';

export function workerCount(setting: number | 'auto'): number {
  return setting === 'auto' ? autoWorkers() : setting;
}

/** What a worker gets when it says hello. */
export type Hello = {
  config: GatewayConfig;
  generation: number;
  stopping: boolean;
  workers: number;
  /** the admin controls in force, applied before the worker listens */
  controls: Control[];
};

/** An admin control (admin/state.ts AdminControl) as it travels to the workers. */
export type Control = { kind: string; service?: string; target?: string; level?: string; on?: boolean };
const CONTROL_TIMEOUT_MS = 5000;

/** A prepare gets the new runtime ready: bounded by the start-up waits (runtime.ts) and more. */
const PREPARE_TIMEOUT_MS = 30_000;
const COMMIT_TIMEOUT_MS = 5000;
/** A worker that has not answered a collection in this time is reported by its last answer. */
const COLLECT_TIMEOUT_MS = 1000;
/** After the drain should be over, workers still running are killed. */
const STOP_MARGIN_MS = 5000;

type Slot = {
  readonly worker: Worker;
  readonly pid: number;
  readonly peer: IpcPeer;
  state: 'starting' | 'ready' | 'draining' | 'gone';
  /** it said hello: its listeners are in place, notices reach it */
  greeted: boolean;
  /** the config generation it runs */
  generation: number;
  /** it drains on its own (a SIGTERM sent to it alone): its replacement is started already */
  replaced: boolean;
  /** its last metrics report */
  lastMetrics: MetricsReport | null;
};

export type PrimaryOptions = {
  config: GatewayConfig;
  /** what a reload reads */
  configFile: string;
  count: number;
  logger: Logger;
  env?: NodeJS.ProcessEnv;
  restartPolicy?: RestartPolicyOptions;
};

export class Primary {
  private config: GatewayConfig;
  private generation = 0;
  private readonly slots = new Set<Slot>();
  /** slots whose metrics are not yet in the retired totals (live ones, and dead ones until folded) */
  private readonly reporting = new Set<Slot>();
  private readonly restartTimers = new Set<NodeJS.Timeout>();
  private readonly policy: RestartPolicy;
  private readonly metrics = new PrimaryMetrics();
  private stopping = false;
  private exitCode = 0;
  /** all workers have been ready at least once: a worker failing to start is then a crash */
  private started = false;
  private groupReady = false;
  /** reloads and catch-ups run one at a time */
  private serial: Promise<unknown> = Promise.resolve();
  private queuedReload: Promise<ReloadResult> | null = null;
  private stopTimer: NodeJS.Timeout | undefined;
  private finish: (code: number) => void = () => undefined;
  private readonly count: number;
  /**
   * The admin controls in force (log level, manual drain, disabled targets), by what they set:
   * a worker started later (a restart) gets them too. A reload forgets the log level.
   */
  private readonly controls = new Map<string, Control>();
  private readonly logger: Logger;
  private readonly configFile: string;
  private readonly env: NodeJS.ProcessEnv;

  constructor(options: PrimaryOptions) {
    this.config = options.config;
    this.configFile = options.configFile;
    this.count = options.count;
    this.logger = options.logger;
    this.env = options.env ?? process.env;
    const policy = options.restartPolicy ?? DEFAULT_RESTART_POLICY;
    this.policy = new RestartPolicy({ ...policy, maxCrashes: Math.max(policy.maxCrashes, this.count) });
  }

  /** Forks the workers; resolves with the exit code once they have all stopped. */
  run(): Promise<number> {
    const done = new Promise<number>((resolve) => (this.finish = resolve));
    // before the first fork: node reads the policy then
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    // structured clone: the config crosses as it is (no JSON round trip)
    cluster.setupPrimary({ serialization: 'advanced' });
    // handlers before the first fork: a signal from here on is the primary's to act on
    process.on('SIGTERM', () => this.stop('SIGTERM'));
    process.on('SIGINT', () => this.stop('SIGINT'));
    process.on('SIGHUP', () => void this.reload('SIGHUP'));
    for (let i = 0; i < this.count; i++) this.fork();
    this.logger.info({ workers: this.count, schedulingPolicy: 'none' }, 'primary started');
    return done;
  }

  private fork(): Slot | null {
    if (this.stopping) return null;
    const worker = cluster.fork();
    const peer = new IpcPeer((msg) => {
      if (!worker.isConnected()) return false;
      worker.send(msg as never, () => undefined); // a failed send is the exit handler's business
      return true;
    });
    const slot: Slot = {
      worker,
      pid: worker.process.pid ?? 0,
      peer,
      state: 'starting',
      greeted: false,
      generation: this.generation,
      replaced: false,
      lastMetrics: null,
    };
    this.slots.add(slot);
    this.reporting.add(slot);
    worker.on('message', (msg: unknown) => peer.receive(msg));
    worker.on('error', (err: Error) => this.logger.warn({ err, worker: slot.pid }, 'worker IPC error'));
    worker.on('exit', (code: number | null, signal: string | null) => this.exited(slot, code, signal));
    peer.handle('hello', (): Hello => {
      slot.greeted = true;
      slot.generation = this.generation;
      return {
        config: this.config,
        generation: this.generation,
        stopping: this.stopping,
        workers: this.count,
        controls: [...this.controls.values()],
      };
    });
    peer.handle('admin-control', (payload) => this.control(payload as Control));
    peer.on('ready', (payload) => this.workerReady(slot, (payload as { generation: number }).generation));
    peer.on('draining', () => this.workerDraining(slot));
    peer.on('final-metrics', (report) => (slot.lastMetrics = report as MetricsReport));
    peer.handle('reload', (payload) => this.reload((payload as { trigger: ReloadTrigger }).trigger));
    peer.handle('metrics', () => this.metricsText());
    return slot;
  }

  /** A worker is up (listening). One that started on an older config is brought up to date first. */
  private workerReady(slot: Slot, generation: number): void {
    slot.generation = generation;
    void this.serially(async () => {
      if (slot.state !== 'starting') return;
      if (slot.generation !== this.generation) {
        const prepared = await this.prepareAll([slot]);
        if (prepared !== null) {
          this.logger.error(
            { worker: slot.pid, reason: prepared },
            'a new worker could not take the running config; stopping it',
          );
          slot.peer.notify('shutdown');
          return;
        }
        await this.commitAll([slot], this.generation);
      }
      if (slot.state !== 'starting') return;
      for (const c of this.controls.values())
        await slot.peer.call('control', c, CONTROL_TIMEOUT_MS).catch(() => undefined);
      slot.state = 'ready';
      this.updateReadiness();
    });
  }

  /**
   * An admin control asked of one worker (the admin port is shared: any may get the call):
   * applied by every worker up or starting; resolves with how many applied it.
   */
  private async control(change: Control): Promise<number> {
    if (change.kind === 'logLevel') this.controls.set('logLevel', change);
    else if (change.kind === 'drain') this.controls.set('drain', change);
    else if (change.kind === 'target')
      this.controls.set(`target ${change.service ?? ''} ${change.target ?? ''}`, change);
    const live = [...this.slots].filter((s) => s.greeted && s.state !== 'gone');
    const applied = await Promise.all(
      live.map((s) => s.peer.call<number>('control', change, CONTROL_TIMEOUT_MS).catch(() => 0)),
    );
    return applied.reduce((a, b) => a + b, 0);
  }

  /**
   * A worker drains: the primary's stop, or a signal sent to that worker alone. In the latter
   * case its replacement starts now, not when its drain is over (which may take
   * `drainTimeout`): the group is not ready until the replacement is.
   */
  private workerDraining(slot: Slot): void {
    if (slot.state === 'gone' || slot.state === 'draining') return;
    slot.state = 'draining';
    if (!this.stopping) {
      slot.replaced = true;
      const delayMs = this.policy.exited();
      this.logger.info({ worker: slot.pid, restartIn: delayMs }, 'worker draining; starting another');
      this.restartLater(delayMs, 'exit');
    }
    this.updateReadiness();
  }

  private exited(slot: Slot, code: number | null, signal: string | null): void {
    const wasStarting = slot.state === 'starting';
    slot.state = 'gone';
    this.slots.delete(slot);
    slot.peer.close();
    // its final report, if it sent one, is read before the channel closes
    const fold = () => {
      if (slot.lastMetrics) this.metrics.retire(slot.lastMetrics);
      this.reporting.delete(slot);
    };
    if (slot.worker.isConnected()) slot.worker.once('disconnect', fold);
    else fold();

    const clean = code === 0 && signal === null;
    const who = { worker: slot.pid, code, signal };
    if (this.stopping) {
      this.logger.info(who, 'worker stopped');
      if (this.slots.size === 0) this.done();
      return;
    }
    this.updateReadiness();
    if (slot.replaced) {
      // it had drained on its own and been replaced already
      if (clean) this.logger.info(who, 'worker exited after draining');
      else this.logger.warn(who, 'worker died while draining');
      return;
    }
    if (!this.started && wasStarting && code !== null && code !== 0) {
      // the first start failed (a port in use, ...): a gateway that cannot start exits 1. (One
      // killed by a signal meanwhile is a crash, replaced like any other.)
      this.logger.error(who, 'a worker could not start; stopping');
      this.stop('start failed', 1);
      return;
    }
    if (clean) {
      const delayMs = this.policy.exited();
      this.logger.info({ ...who, restartIn: delayMs }, 'worker exited; starting another');
      this.restartLater(delayMs, 'exit');
      return;
    }
    const decision = this.policy.crashed(performance.now());
    if (!decision.restart) {
      this.logger.error(
        { ...who, recentCrashes: decision.recentCrashes },
        'workers keep crashing; stopping (crash loop)',
      );
      this.stop('crash loop', 1);
      return;
    }
    this.logger.error(
      { ...who, restartIn: decision.delayMs, recentCrashes: decision.recentCrashes },
      'worker died; starting another',
    );
    this.restartLater(decision.delayMs, 'crash');
  }

  /** A referenced timer: it keeps the primary alive while no worker runs. */
  private restartLater(delayMs: number, reason: 'crash' | 'exit'): void {
    const timer = setTimeout(() => {
      this.restartTimers.delete(timer);
      if (this.fork() !== null) this.metrics.workerRestarts.inc({ reason });
    }, delayMs);
    this.restartTimers.add(timer);
  }

  /** Ready = every worker up and none draining; told to every worker when it changes. */
  private updateReadiness(): void {
    const slots = [...this.slots];
    // a worker draining on its own no longer counts: its replacement does
    const serving = slots.filter((s) => s.state !== 'draining');
    const ready =
      !this.stopping && serving.length === this.count && serving.every((s) => s.state === 'ready');
    if (ready) this.started = true;
    if (ready === this.groupReady) return;
    this.groupReady = ready;
    for (const s of slots) if (s.greeted) s.peer.notify('readiness', ready);
    this.logger.info(
      { ready, workers: serving.length },
      ready ? 'all workers ready' : 'workers not all ready',
    );
  }

  /** Stops every worker (they drain) and resolves `run` with `code` once they are gone. */
  stop(reason: string, code = 0): void {
    if (this.stopping) return;
    this.stopping = true;
    this.exitCode = code;
    for (const t of this.restartTimers) clearTimeout(t);
    this.restartTimers.clear();
    this.updateReadiness();
    this.logger.info({ reason, workers: this.slots.size }, 'stopping workers');
    if (this.slots.size === 0) {
      this.done();
      return;
    }
    // a worker that has not said hello yet hears it in the answer to its hello
    for (const s of this.slots) if (s.greeted) s.peer.notify('shutdown');
    const { shutdown } = this.config;
    const bound = acceptGraceMs(shutdown.acceptGrace, this.env) + shutdown.drainTimeout + FLUSH_TIMEOUT_MS;
    this.stopTimer = setTimeout(() => {
      this.logger.error(
        { workers: [...this.slots].map((s) => s.pid) },
        'workers did not stop in time; killing them',
      );
      this.exitCode = 1;
      for (const s of this.slots) s.worker.process.kill('SIGKILL');
    }, bound + STOP_MARGIN_MS);
  }

  private done(): void {
    clearTimeout(this.stopTimer);
    this.finish(this.exitCode);
  }

  private serially<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.serial.then(fn, fn);
    this.serial = run.catch(() => undefined);
    return run;
  }

  /**
   * Reloads every worker from the file; resolves when all have the new config (or none has).
   * A reload asked for while another waits to start joins it (it will read the file then).
   */
  reload(trigger: ReloadTrigger): Promise<ReloadResult> {
    if (this.queuedReload) return this.queuedReload;
    const queued = this.serially(() => {
      this.queuedReload = null;
      return this.reloadAll(trigger);
    });
    this.queuedReload = queued;
    return queued;
  }

  private async reloadAll(trigger: ReloadTrigger): Promise<ReloadResult> {
    if (this.stopping) return { ok: true, restartNeeded: [] };
    let result: LoadResult;
    try {
      result = await loadConfigFile(this.configFile);
    } catch (err) {
      return this.reloadFailed(trigger, err instanceof Error ? err.message : String(err));
    }
    if (!result.ok) {
      this.metrics.configReloads.inc({ result: 'failure' });
      this.logger.warn(
        { trigger, problems: result.problems.map(formatProblem) },
        'config reload rejected; keeping the running config',
      );
      return { ok: false, reason: 'invalid_config', problems: result.problems };
    }
    const next = result.config;
    // workers still starting are brought to this config when they are up (workerReady)
    const targets = [...this.slots].filter((s) => s.state === 'ready');
    const failure = await this.prepareAll(targets, next);
    if (failure !== null) return this.reloadFailed(trigger, failure);
    const old = this.config;
    this.config = next;
    this.generation++;
    await this.commitAll(targets, this.generation);
    this.logger.level = next.logging.level;
    // the workers took the config's log level: a later worker must too
    this.controls.delete('logLevel');
    const needed = restartNeeded(old, next);
    if (needed.length > 0)
      this.logger.warn({ restartNeeded: needed }, 'these settings change only on restart');
    this.metrics.configReloads.inc({ result: 'success' });
    this.logger.info({ trigger, routes: next.routes.length, workers: targets.length }, 'config reloaded');
    return { ok: true, restartNeeded: needed };
  }

  /**
   * Has each worker get `config` ready; null when all did, else why one could not (and every
   * worker dropped what it prepared). A worker that exits meanwhile is left out.
   */
  private async prepareAll(targets: Slot[], config = this.config): Promise<string | null> {
    const results = await Promise.all(
      targets.map((s) =>
        s.peer.call<PrepareResult>('prepare', { config }, PREPARE_TIMEOUT_MS).then(
          (r) => (r.ok ? null : `worker ${s.pid}: ${r.detail}`),
          (err: Error) => (err instanceof IpcClosedError ? null : `worker ${s.pid}: ${err.message}`),
        ),
      ),
    );
    const failure = results.find((r) => r !== null) ?? null;
    if (failure !== null) {
      await Promise.all(
        targets.map((s) => s.peer.call('abort', null, COMMIT_TIMEOUT_MS).catch(() => undefined)),
      );
    }
    return failure;
  }

  private async commitAll(targets: Slot[], generation: number): Promise<void> {
    await Promise.all(
      targets.map((s) =>
        s.peer.call('commit', null, COMMIT_TIMEOUT_MS).then(
          () => (s.generation = generation),
          (err: Error) => this.logger.warn({ worker: s.pid, err }, 'a worker did not confirm the new config'),
        ),
      ),
    );
  }

  private reloadFailed(trigger: ReloadTrigger, detail: string): ReloadResult {
    this.metrics.configReloads.inc({ result: 'failure' });
    this.logger.error({ trigger, reason: detail }, 'config reload failed; keeping the running config');
    return { ok: false, reason: 'reload_failed', detail };
  }

  /** Every worker's metrics, summed with what workers that are gone had counted. */
  private async metricsText(): Promise<string> {
    await Promise.all(
      [...this.slots]
        .filter((s) => s.greeted && s.state !== 'gone')
        .map((s) =>
          s.peer.call<MetricsReport | null>('collect', null, COLLECT_TIMEOUT_MS).then(
            (report) => {
              if (report !== null) s.lastMetrics = report;
            },
            () => undefined, // slow or gone: its last report stands in
          ),
        ),
    );
    // each worker counted once: live (or dead and not yet folded) by its last report, else retired
    const live = [...this.reporting].flatMap((s) => (s.lastMetrics ? [s.lastMetrics] : []));
    return this.metrics.text(live);
  }
}
