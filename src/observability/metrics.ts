/**
 * Prometheus metrics (prom-client), one registry per process, served on the admin port at
 * `/metrics`. Names and labels are the SPEC's; labels never hold a key, a user, an IP or a path.
 * This holds what exists so far (rate limiting, build info, Node's process metrics); the
 * observability issue adds the request histograms and the rest.
 */
import { readFileSync } from 'node:fs';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ServiceMetrics } from '../upstream/service.js';

export type DecisionResult = 'allowed' | 'rate_limited' | 'quota_exceeded' | 'fail_open' | 'fail_closed';

const packageVersion = (): string => {
  try {
    const url = new URL('../../package.json', import.meta.url);
    return (JSON.parse(readFileSync(url, 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown';
  }
};

/** What the scrape reads from the running services (the current runtime's, after a reload). */
export type ServiceView = {
  readonly name: string;
  readonly breaker: { readonly state: 'closed' | 'half-open' | 'open' };
  readonly targets: ReadonlyArray<{ readonly address: string; readonly available: boolean }>;
};

const BREAKER_VALUE = { closed: 0, 'half-open': 1, open: 2 } as const;

/** seconds; from sub-millisecond loopback hops to the default 15 s response timeout */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly ratelimitDecisions: Counter<'tier' | 'result'>;
  readonly storeErrors: Counter<'store'>;
  readonly degradedDecisions: Counter<'store' | 'policy'>;
  readonly storeDegraded: Gauge<'store'>;
  readonly authFailures: Counter<'method' | 'reason'>;
  readonly upstreamDuration: Histogram<'service'>;
  readonly upstreamErrors: Counter<'service' | 'reason'>;
  readonly upstreamRetries: Counter<'service' | 'reason'>;
  readonly upstreamRetriesSkipped: Counter<'service' | 'reason'>;
  readonly upstreamPanic: Counter<'service'>;
  private services: () => Iterable<ServiceView> = () => [];
  private readonly serviceMetrics = new Map<string, ServiceMetrics>();

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
    this.upstreamDuration = new Histogram({
      name: 'gatehouse_upstream_request_duration_seconds',
      help: 'Upstream attempts, from dispatch until the response ended (retries are separate attempts)',
      labelNames: ['service'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.upstreamErrors = new Counter({
      name: 'gatehouse_upstream_errors_total',
      help: 'Upstream attempts that failed without an HTTP answer (reason: connect-error, connect-timeout, timeout, reset, protocol)',
      labelNames: ['service', 'reason'],
      registers,
    });
    this.upstreamRetries = new Counter({
      name: 'gatehouse_upstream_retries_total',
      help: 'Retries sent, by what was retried (connect-error, timeout, reset, or the status)',
      labelNames: ['service', 'reason'],
      registers,
    });
    this.upstreamRetriesSkipped = new Counter({
      name: 'gatehouse_upstream_retries_skipped_total',
      help: 'Retries not sent although retry.on named the failure (reason: budget, deadline, breaker, retry_after)',
      labelNames: ['service', 'reason'],
      registers,
    });
    this.upstreamPanic = new Counter({
      name: 'gatehouse_upstream_panic_total',
      help: 'Requests sent while no target of the service was healthy (all targets tried instead of none)',
      labelNames: ['service'],
      registers,
    });
    const services = () => this.services();
    new Gauge({
      name: 'gatehouse_circuit_breaker_state',
      help: 'Circuit breaker state per service: 0 closed, 1 half-open, 2 open',
      labelNames: ['service'],
      registers,
      collect() {
        this.reset();
        for (const s of services()) this.set({ service: s.name }, BREAKER_VALUE[s.breaker.state]);
      },
    });
    new Gauge({
      name: 'gatehouse_target_healthy',
      help: 'Whether a target takes traffic (1) or is unhealthy or ejected (0)',
      labelNames: ['service', 'target'],
      registers,
      collect() {
        this.reset();
        for (const s of services())
          for (const t of s.targets) this.set({ service: s.name, target: t.address }, t.available ? 1 : 0);
      },
    });
    this.storeDegraded = new Gauge({
      name: 'gatehouse_ratelimit_store_degraded',
      help: '1 while the rate-limit store is unavailable and the failure policy decides',
      labelNames: ['store'],
      registers,
    });
  }

  /** Where breaker and target gauges are read at scrape time. */
  watchServices(services: () => Iterable<ServiceView>): void {
    this.services = services;
  }

  /** A service's counters, label children bound once (kept across reloads). */
  forService(service: string): ServiceMetrics {
    let m = this.serviceMetrics.get(service);
    if (m === undefined) {
      const duration = this.upstreamDuration.labels(service);
      const panic = this.upstreamPanic.labels(service);
      m = {
        upstreamError: (reason) => this.upstreamErrors.labels(service, reason).inc(),
        attemptDuration: (seconds) => duration.observe(seconds),
        retry: (reason) => this.upstreamRetries.labels(service, reason).inc(),
        retrySkipped: (reason) => this.upstreamRetriesSkipped.labels(service, reason).inc(),
        panic: () => panic.inc(),
      };
      this.serviceMetrics.set(service, m);
    }
    return m;
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
