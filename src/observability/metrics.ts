/**
 * Prometheus metrics (prom-client), one registry per process, served on the admin port at
 * `/metrics`. Names and labels are the ones docs/observability.md lists; labels never hold a key,
 * a user, an IP or a path.
 */
import { readFileSync } from 'node:fs';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { FastCounter, FastHistogram, type CounterChild, type HistogramChild } from './fast-metrics.js';
import { HTTP_METHODS } from '../config/schema.js';
import type { ServiceMetrics } from '../upstream/service.js';

export type DecisionResult =
  | 'allowed'
  | 'rate_limited'
  | 'quota_exceeded'
  | 'fail_open'
  | 'fail_closed'
  // a route's shadow limit would have refused the request (it went on)
  | 'would_reject';

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

/** OpenTelemetry's recommended boundaries for http.server.request.duration (seconds) */
const HTTP_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

/** Methods kept as label values; anything else is `_OTHER` (OpenTelemetry semantic conventions). */
const KNOWN_METHODS: ReadonlySet<string> = new Set(HTTP_METHODS);

type RequestChildren = { duration: HistogramChild; count: CounterChild };

const BREAKER_VALUE = { closed: 0, 'half-open': 1, open: 2 } as const;

/** seconds; from sub-millisecond loopback hops to the default 15 s response timeout */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export class GatewayMetrics {
  readonly registry = new Registry();
  readonly ratelimitDecisions: FastCounter;
  readonly storeErrors: FastCounter;
  readonly degradedDecisions: FastCounter;
  readonly storeDegraded: Gauge<'store'>;
  /** revocations made through this instance's admin API (auth.jwt.revocation) */
  readonly tokensRevoked: Counter<'kind'>;
  readonly memoryEvictions: FastCounter;
  readonly authFailures: FastCounter;
  readonly upstreamDuration: FastHistogram;
  readonly upstreamErrors: FastCounter;
  readonly upstreamRetries: FastCounter;
  readonly upstreamRetriesSkipped: FastCounter;
  readonly upstreamPanic: FastCounter;
  readonly requestDuration: FastHistogram;
  readonly requests: FastCounter;
  readonly configReloads: FastCounter;
  readonly handlerFailures: FastCounter;
  readonly unparsedRequests: FastCounter;
  // protocols (server/protocols/): TLS handshakes, certificate reloads, HTTP/2 sessions closed
  readonly tlsHandshakeFailures: FastCounter;
  readonly tlsCertificateReloads: FastCounter;
  readonly http2SessionsClosed: FastCounter;
  /** label children by route, method and status: no label hashing per request */
  /** route → service → method → status: label values resolved once, never joined per request */
  private readonly requestChildren = new Map<
    string,
    Map<string, Map<string, Map<number, RequestChildren>>>
  >();
  private services: () => Iterable<ServiceView> = () => [];
  private readonly serviceMetrics = new Map<string, ServiceMetrics>();

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    // prom-client names these gauges with a counter's `_total`, which `promtool check metrics`
    // rejects; their per-type versions (nodejs_active_handles{type}, ...) stay and sum to them.
    for (const name of [
      'nodejs_active_handles_total',
      'nodejs_active_requests_total',
      'nodejs_active_resources_total',
    ])
      this.registry.removeSingleMetric(name);
    new Gauge({
      name: 'gatehouse_build_info',
      aggregator: 'first',
      help: 'Gatehouse version (value is always 1)',
      labelNames: ['version'],
      registers,
    }).set({ version: packageVersion() }, 1);
    this.ratelimitDecisions = new FastCounter(
      'gatehouse_ratelimit_decisions_total',
      'Rate-limit decisions by tier (route:NAME for a route with its own limits) and result (fail_open/fail_closed: decided by onStoreError while the store was unavailable; would_reject: a shadow limit would have refused the request, which went on)',
      ['tier', 'result'],
      this.registry,
    );
    this.storeErrors = new FastCounter(
      'gatehouse_store_errors_total',
      'Failed calls to a shared store (timeouts, connection errors)',
      ['store'],
      this.registry,
    );
    this.degradedDecisions = new FastCounter(
      'gatehouse_ratelimit_degraded_decisions_total',
      'Rate-limit decisions taken by the failure policy instead of the shared store',
      ['store', 'policy'],
      this.registry,
    );
    this.memoryEvictions = new FastCounter(
      'gatehouse_ratelimit_memory_evictions_total',
      'Subjects evicted from the in-process rate-limit counters at rateLimit.memory.maxEntries (store: memory without redis, local the onStoreError fallback); an evicted subject starts from zero',
      ['store'],
      this.registry,
    );
    this.authFailures = new FastCounter(
      'gatehouse_auth_failures_total',
      'Requests an authentication method did not accept (reason: absent, invalid, unavailable, revoked)',
      ['method', 'reason'],
      this.registry,
    );
    this.requestDuration = new FastHistogram(
      'http_server_request_duration_seconds',
      'Duration of HTTP server requests (OpenTelemetry semantic conventions; http_route is the route name, empty when none matched)',
      ['http_route', 'http_request_method', 'http_response_status_code'],
      HTTP_DURATION_BUCKETS,
      this.registry,
    );
    this.requests = new FastCounter(
      'gatehouse_requests_total',
      'Requests by route name (empty when none matched), service (the one the request went to, or would have: a weighted route splits by it; empty when no route matched), method and status (499: the client left before an answer)',
      ['route', 'service', 'method', 'status'],
      this.registry,
    );
    this.configReloads = new FastCounter(
      'gatehouse_config_reloads_total',
      'Config reloads (POST /reload, SIGHUP) by result',
      ['result'],
      this.registry,
    );
    this.configReloads.labels('success').inc(0);
    this.configReloads.labels('failure').inc(0);
    this.handlerFailures = new FastCounter(
      'gatehouse_handler_failures_total',
      'Requests whose handler threw or rejected: answered 500 internal_error, or the connection closed (port: proxy, admin). Always a bug',
      ['port'],
      this.registry,
    );
    this.handlerFailures.labels('proxy').inc(0);
    this.handlerFailures.labels('admin').inc(0);
    this.unparsedRequests = new FastCounter(
      'gatehouse_unparsed_requests_total',
      "Requests refused before they became requests: node's HTTP parser could not read them, or they came too slowly (reason: the parser's error code); not in gatehouse_requests_total",
      ['status', 'reason'],
      this.registry,
    );
    this.tlsHandshakeFailures = new FastCounter(
      'gatehouse_tls_handshake_failures_total',
      'TLS handshakes on the proxy port that failed (reason: timeout, reset, not_tls, protocol_version, no_shared_cipher, no_client_certificate, bad_client_certificate, alert, other)',
      ['reason'],
      this.registry,
    );
    this.tlsCertificateReloads = new FastCounter(
      'gatehouse_tls_certificate_reloads_total',
      'Re-reads of the proxy port certificates (file change, SIGHUP, POST /reload) by result; on failure the certificates in use are kept',
      ['result'],
      this.registry,
    );
    this.http2SessionsClosed = new FastCounter(
      'gatehouse_http2_sessions_closed_total',
      'HTTP/2 client connections the gateway closed for abuse or errors (reason: rapid_reset, flood, protocol_error, session_error)',
      ['reason'],
      this.registry,
    );
    this.upstreamDuration = new FastHistogram(
      'gatehouse_upstream_request_duration_seconds',
      'Upstream attempts, from dispatch until the response ended (retries are separate attempts)',
      ['service'],
      LATENCY_BUCKETS,
      this.registry,
    );
    this.upstreamErrors = new FastCounter(
      'gatehouse_upstream_errors_total',
      'Upstream attempts that failed without an HTTP answer (reason: connect-error, connect-timeout, tls, timeout, reset, protocol)',
      ['service', 'reason'],
      this.registry,
    );
    this.upstreamRetries = new FastCounter(
      'gatehouse_upstream_retries_total',
      'Retries sent, by what was retried (connect-error, timeout, reset, or the status)',
      ['service', 'reason'],
      this.registry,
    );
    this.upstreamRetriesSkipped = new FastCounter(
      'gatehouse_upstream_retries_skipped_total',
      'Retries not sent although retry.on named the failure (reason: budget, deadline, breaker, retry_after)',
      ['service', 'reason'],
      this.registry,
    );
    this.upstreamPanic = new FastCounter(
      'gatehouse_upstream_panic_total',
      'Requests sent while no target of the service was healthy (all targets tried instead of none)',
      ['service'],
      this.registry,
    );
    const services = () => this.services();
    new Gauge({
      name: 'gatehouse_circuit_breaker_state',
      // across workers (each has its own breaker): the worst state
      aggregator: 'max',
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
      // across workers (each has its own verdict): unhealthy if any worker finds it so
      aggregator: 'min',
      help: 'Whether a target takes traffic (1) or is unhealthy or ejected (0)',
      labelNames: ['service', 'target'],
      registers,
      collect() {
        this.reset();
        for (const s of services())
          for (const t of s.targets) this.set({ service: s.name, target: t.address }, t.available ? 1 : 0);
      },
    });
    this.tokensRevoked = new Counter({
      name: 'gatehouse_tokens_revoked_total',
      help: 'JWT revocations made through this instance’s admin API (kind: jti, subject)',
      labelNames: ['kind'],
      registers,
    });
    this.storeDegraded = new Gauge({
      name: 'gatehouse_ratelimit_store_degraded',
      aggregator: 'max',
      help: '1 while the rate-limit store is unavailable and the failure policy decides',
      labelNames: ['store'],
      registers,
    });
  }

  /** Counts one finished request in the request histogram and counter. */
  recordRequest(route: string, service: string, method: string, status: number, seconds: number): void {
    let byService = this.requestChildren.get(route);
    if (byService === undefined) this.requestChildren.set(route, (byService = new Map()));
    let byMethod = byService.get(service);
    if (byMethod === undefined) byService.set(service, (byMethod = new Map()));
    let byStatus = byMethod.get(method);
    if (byStatus === undefined) byMethod.set(method, (byStatus = new Map()));
    let children = byStatus.get(status);
    if (children === undefined) {
      // rarer methods (PROPFIND, ...) are one label value, as the conventions ask
      const m = KNOWN_METHODS.has(method) ? method : '_OTHER';
      const code = String(status);
      children = {
        duration: this.requestDuration.labels(route, m, code),
        count: this.requests.labels(route, service, m, code),
      };
      byStatus.set(status, children); // bounded: node's parser knows a fixed set of methods
    }
    children.duration.observe(seconds);
    children.count.inc();
  }

  /** Exposes the JWT denylist's size and freshness (read at scrape time; null: no denylist). */
  watchRevocation(
    stats: () => { jtis: number; subjects: number; resyncAgeSeconds: number | null; loaded: boolean } | null,
  ): void {
    const registers = [this.registry];
    new Gauge({
      name: 'gatehouse_token_denylist_entries',
      // every worker holds the same list; one that lags reports fewer
      aggregator: 'min',
      help: 'Entries of the JWT denylist held in memory (kind: jti, subject)',
      labelNames: ['kind'],
      registers,
      collect() {
        this.reset();
        const s = stats();
        if (s === null) return;
        this.set({ kind: 'jti' }, s.jtis);
        this.set({ kind: 'subject' }, s.subjects);
      },
    });
    new Gauge({
      name: 'gatehouse_token_denylist_resync_age_seconds',
      aggregator: 'max',
      help: 'Seconds since the JWT denylist was last read in full from Redis (absent: never read, or no denylist)',
      registers,
      collect() {
        this.reset();
        const age = stats()?.resyncAgeSeconds ?? null;
        if (age !== null) this.set(age);
      },
    });
  }

  /** Exposes the span exporter's counts (read at scrape time). */
  watchTracing(stats: () => { queued: number; exported: number; dropped: number; failed: number }): void {
    const registers = [this.registry];
    new Counter({
      name: 'gatehouse_tracing_spans_total',
      help: 'Sampled spans by outcome: exported, dropped (export queue full), failed (the collector refused or did not answer)',
      labelNames: ['result'],
      registers,
      collect() {
        const s = stats();
        this.reset();
        this.labels('exported').inc(s.exported);
        this.labels('dropped').inc(s.dropped);
        this.labels('failed').inc(s.failed);
      },
    });
    new Gauge({
      name: 'gatehouse_tracing_spans_queued',
      help: 'Sampled spans waiting in the export queue',
      registers,
      collect() {
        this.set(stats().queued);
      },
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
      would_reject: c.labels(tier, 'would_reject'),
    };
  }
}
