/**
 * `workers: auto | N`: the primary forks one worker per core (or N); all share the proxy and
 * admin ports. SIGTERM to the primary drains every worker, then exits 0. A worker that dies
 * outside a shutdown is replaced. SIGHUP (reload) is passed on to every worker, and a reload
 * through one worker's admin API reaches the others the same way. `/metrics` on any worker
 * answers with every worker's metrics, aggregated by the primary (cluster-metrics.ts).
 */
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { AggregatorRegistry, type PrometheusContentType } from 'prom-client';
import type { Logger } from '../observability/logger.js';
import { serveClusterMetrics } from './cluster-metrics.js';

export function workerCount(setting: number | 'auto'): number {
  return setting === 'auto' ? availableParallelism() : setting;
}

export function runPrimary(count: number, logger: Logger): Promise<number> {
  let stopping = false;
  const alive = new Set<Worker>();
  const aggregator = new AggregatorRegistry<PrometheusContentType>();
  return new Promise((resolve) => {
    const fork = () => {
      const w = cluster.fork();
      alive.add(w);
      serveClusterMetrics(w, aggregator);
      w.on('message', (msg: { type?: string } | null) => {
        if (msg?.type !== 'gatehouse:reload-all') return;
        for (const other of alive) if (other !== w) other.process.kill('SIGHUP');
      });
      w.on('exit', (code, signal) => {
        alive.delete(w);
        if (stopping) {
          if (alive.size === 0) resolve(0);
          return;
        }
        logger.error({ worker: w.process.pid, code, signal }, 'worker died; starting another');
        setTimeout(fork, 200).unref();
      });
    };
    for (let i = 0; i < count; i++) fork();
    logger.info({ workers: count }, 'primary started');
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'stopping workers');
      if (alive.size === 0) resolve(0);
      for (const w of alive) w.process.kill('SIGTERM');
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      for (const w of alive) w.process.kill('SIGHUP');
    });
  });
}

export const isWorker = (): boolean => cluster.isWorker;
