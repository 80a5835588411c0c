/**
 * Prometheus metrics (prom-client), one registry per process, served on the admin port at
 * `/metrics`. Names and labels are the SPEC's; labels never hold a key, a user, an IP or a path.
 * This holds what exists so far (rate limiting, build info, Node's process metrics); the
 * observability issue adds the request histograms and the rest.
 */
import { readFileSync } from 'node:fs';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

export type DecisionResult = 'allowed' | 'rate_limited' | 'quota_exceeded' | 'fail_open' | 'fail_closed';

const packageVersion = (): string => {
  try {
    const url = new URL('../../package.json', import.meta.url);
    return (JSON.parse(readFileSync(url, 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
};

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly ratelimitDecisions: Counter<'tier' | 'result'>;
  readonly storeErrors: Counter<'store'>;
  readonly degradedDecisions: Counter<'store' | 'policy'>;
  readonly storeDegraded: Gauge<'store'>;
  readonly authFailures: Counter<'method' | 'reason'>;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: 'gatehouse_build_info',
      help: 'Gatehouse version (value is always 1)',
      labelNames: ['version'],
      registers,
    }).set({ version: packageVersion() }, 1);
    this.ratelimitDecisions = new Counter({
      name: 'gatehouse_ratelimit_decisions_total',
      help: 'Rate-limit decisions by tier and result (fail_open/fail_closed: decided by onStoreError while the store was unavailable)',
      labelNames: ['tier', 'result'],
      registers,
    });
    this.storeErrors = new Counter({
      name: 'gatehouse_store_errors_total',
      help: 'Failed calls to a shared store (timeouts, connection errors)',
      labelNames: ['store'],
      registers,
    });
    this.degradedDecisions = new Counter({
      name: 'gatehouse_ratelimit_degraded_decisions_total',
      help: 'Rate-limit decisions taken by the failure policy instead of the shared store',
      labelNames: ['store', 'policy'],
      registers,
    });
    this.authFailures = new Counter({
      name: 'gatehouse_auth_failures_total',
      help: 'Requests an authentication method did not accept (reason: absent, invalid, unavailable)',
      labelNames: ['method', 'reason'],
      registers,
    });
    this.storeDegraded = new Gauge({
      name: 'gatehouse_ratelimit_store_degraded',
      help: '1 while the rate-limit store is unavailable and the failure policy decides',
      labelNames: ['store'],
      registers,
    });
  }

  /** A counter child per tier and result, so the hot path does no label lookup. */
  decisionCounter(tier: string): Record<DecisionResult, { inc(): void }> {
    const c = this.ratelimitDecisions;
    return {
      allowed: c.labels(tier, 'allowed'),
      rate_limited: c.labels(tier, 'rate_limited'),
      quota_exceeded: c.labels(tier, 'quota_exceeded'),
      fail_open: c.labels(tier, 'fail_open'),
      fail_closed: c.labels(tier, 'fail_closed'),
    };
  }
}
