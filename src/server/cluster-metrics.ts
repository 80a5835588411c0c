/**
 * `/metrics` with workers: every worker has its own registry, and the admin port is shared, so a
 * scrape would see one random worker's counters. Instead the worker that gets the scrape asks the
 * primary, which collects every worker's registry with prom-client's AggregatorRegistry (counters
 * and histograms summed; gauges by their declared aggregator) and answers with the total.
 */
import type { Worker } from 'node:cluster';
import { AggregatorRegistry, type PrometheusContentType, type Registry } from 'prom-client';

const ASK = 'gatehouse:metrics';
const ANSWER = 'gatehouse:metrics-result';

type Ask = { type: typeof ASK; id: number };
type Answer = { type: typeof ANSWER; id: number; body?: string; error?: string };

/** Primary: answers a worker's request for the whole cluster's metrics. */
export function serveClusterMetrics(
  worker: Worker,
  aggregator: AggregatorRegistry<PrometheusContentType>,
): void {
  worker.on('message', (msg: Partial<Ask> | null) => {
    if (msg?.type !== ASK || typeof msg.id !== 'number') return;
    const id = msg.id;
    aggregator.clusterMetrics().then(
      (body: string) => worker.isConnected() && worker.send({ type: ANSWER, id, body } satisfies Answer),
      (err: Error) =>
        worker.isConnected() && worker.send({ type: ANSWER, id, error: err.message } satisfies Answer),
    );
  });
}

let nextId = 0;

/**
 * Worker: reports `registry` when the primary collects, and returns a function that fetches the
 * aggregated text (rejecting after `timeoutMs`, e.g. while a worker is being replaced).
 */
export function clusterMetricsSource(registry: Registry, timeoutMs = 6000): () => Promise<string> {
  // constructing one installs prom-client's worker-side listener for the primary's collection
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([registry]);
  return () =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => finish(new Error('the primary did not answer in time')), timeoutMs);
      const onMessage = (msg: Partial<Answer> | null) => {
        if (msg?.type !== ANSWER || msg.id !== id) return;
        finish(msg.error === undefined ? null : new Error(msg.error), msg.body);
      };
      const finish = (err: Error | null, body?: string) => {
        clearTimeout(timer);
        process.off('message', onMessage);
        if (err !== null) reject(err);
        else resolve(body ?? '');
      };
      process.on('message', onMessage);
      process.send?.({ type: ASK, id } satisfies Ask);
    });
}
