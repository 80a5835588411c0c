/**
 * Scripted upstreams and config fragments the upstream resilience tests share (balancing,
 * health, circuit breaker, retries: `test/integration/upstream-*.test.ts`).
 */
import type { ServerResponse } from 'node:http';
import { startUpstream, type Upstream } from './upstream.js';

/** Retries, breaker and ejection off: a service that shows one mechanism at a time. */
export const QUIET = 'passiveHealth: { consecutiveErrors: 0 }, circuitBreaker: { enabled: false }';
export const NO_RETRY = 'retry: { attempts: 1 }';

/** A route `/<name>/**` to the service of the same name, prefix stripped. */
export const routes = (names: readonly string[]) =>
  'routes:\n' +
  names
    .map((n) => `  - { name: ${n}, match: { path: /${n}/** }, service: ${n}, stripPrefix: /${n} }`)
    .join('\n');

/**
 * An upstream that answers its name (so the client can tell who answered) with a settable
 * status; `/health` answers with the `health` status; `/hold` is held open while `holding`;
 * `/slow` answers after 150 ms.
 */
export type Backend = {
  readonly name: string;
  readonly up: Upstream;
  readonly url: string;
  status: number;
  health: number;
  holding: boolean;
  readonly held: ServerResponse[];
  /** requests received other than health checks */
  hits(): number;
  release(): void;
};

export async function backend(name: string): Promise<Backend> {
  const script = { status: 200, health: 200, holding: false, held: [] as ServerResponse[] };
  const up = await startUpstream((req, res) => {
    req.resume();
    if (req.url === '/health') {
      res.writeHead(script.health, { 'content-length': '0' });
      res.end();
      return;
    }
    if (req.url === '/hold' && script.holding) {
      script.held.push(res);
      return;
    }
    res.writeHead(script.status, { 'content-type': 'text/plain' });
    if (req.url === '/slow') setTimeout(() => res.end(name), 150);
    else res.end(name);
  });
  return Object.assign(script, {
    name,
    up,
    url: up.url,
    hits: () => up.received.filter((r) => r.url !== '/health').length,
    release: () => {
      for (const res of script.held.splice(0)) res.end(name);
    },
  });
}

/** `host:port` of a target's URL, as the metrics label it */
export const address = (url: string) => new URL(url).host;
