/**
 * An upstream service: its targets (static or discovered, replaced as discovery changes them),
 * their health (active checks, passive ejection), the balancer over the available ones, the
 * circuit breaker and the retry policy. The proxy asks it for a target and reports each
 * attempt's outcome back; everything the admin API and metrics show about a service is here.
 */
import { systemClock, type Clock } from '../clock.js';
import type { ServiceConfig } from '../config/schema.js';
import { silentLogger, type Logger } from '../observability/logger.js';
import { ActiveHealthCheck } from './active-health.js';
import { createBalancer, type Balancer } from './balancer.js';
import { CircuitBreaker, type BreakerState, type Outcome } from './circuit-breaker.js';
import type { Discovery } from './discovery/discovery.js';
import type { UpstreamFailure } from './errors.js';
import { mayEject, nextEjection } from './passive-health.js';
import { RetryPolicy } from './retry-policy.js';
import { Target } from './target.js';
import { tlsSnapshot, upstreamConnect, type UpstreamConnect } from './tls.js';

/**
 * What a service counts in metrics; the gateway's registry implements it (no-ops otherwise).
 * Breaker states and target health are gauges read from the services at scrape time.
 */
export interface ServiceMetrics {
  upstreamError(reason: UpstreamFailure): void;
  attemptDuration(seconds: number): void;
  retry(reason: string): void;
  retrySkipped(reason: 'budget' | 'deadline' | 'breaker' | 'retry_after'): void;
  panic(): void;
}

export const noServiceMetrics: ServiceMetrics = {
  upstreamError: () => undefined,
  attemptDuration: () => undefined,
  retry: () => undefined,
  retrySkipped: () => undefined,
  panic: () => undefined,
};

export type ServiceOptions = {
  /** where the targets come from; the service starts it and closes it */
  source: Discovery;
  metrics?: ServiceMetrics | undefined;
  logger?: Logger | undefined;
  /** injectable for tests of the breaker and ejection timing */
  clock?: Clock;
};

export class Service {
  /** every known target; replaced (never mutated) when discovery changes */
  targets: readonly Target[] = [];
  /** the targets that take traffic now; recomputed when health changes */
  private available: readonly Target[] = [];
  /** the targets an operator has not disabled: the candidates in panic */
  private enabled: readonly Target[] = [];
  /** origins disabled by an operator, kept while discovery replaces the targets */
  private readonly disabledOrigins = new Set<string>();
  private ejected = 0;
  private readonly balancer: Balancer;
  readonly breaker: CircuitBreaker;
  readonly retry: RetryPolicy;
  private closed = false;
  /** how the pools connect (TLS files read once, when the service is built) */
  private readonly connect: UpstreamConnect;

  private readonly source: Discovery;
  readonly metrics: ServiceMetrics;
  private readonly logger: Logger;
  readonly clock: Clock;

  constructor(
    readonly name: string,
    readonly config: ServiceConfig,
    options: ServiceOptions,
  ) {
    this.source = options.source;
    this.metrics = options.metrics ?? noServiceMetrics;
    this.logger = options.logger ?? silentLogger();
    // monotonic: ejections, the breaker's open period and the retry budget are durations, which a
    // wall-clock step (NTP, a VM resumed) must neither stretch nor cut
    const clock = (this.clock = options.clock ?? systemClock);
    this.balancer = createBalancer(config.balancer);
    this.breaker = new CircuitBreaker(config.circuitBreaker, (state) => this.breakerChanged(state), clock);
    this.retry = new RetryPolicy(config.retry, clock);
    this.connect = upstreamConnect(config);
    if (config.tls?.verify === false) {
      this.logger.warn(
        { service: name },
        "TLS verification is off (tls.verify: false): the targets' certificates are not checked",
      );
    }
    this.setOrigins(this.source.origins);
    this.source.start((origins) => this.setOrigins(origins));
  }

  private breakerChanged(state: BreakerState): void {
    if (state === 'open') {
      const { total, failed } = this.breaker.counts();
      this.logger.warn(
        {
          service: this.name,
          requests: total,
          failures: failed,
          openForMs: this.config.circuitBreaker.openFor,
        },
        'circuit breaker opened',
      );
    } else this.logger.info({ service: this.name, state }, `circuit breaker ${state}`);
  }

  /** resolves once discovery has answered once (or `timeoutMs` passed) */
  ready(timeoutMs: number): Promise<void> {
    return this.source.ready(timeoutMs);
  }

  /**
   * A target for the next attempt, avoiding `tried` when possible; null when the service has no
   * target at all. When no target is available (all unhealthy or ejected), every target is a
   * candidate ("panic"): trying them all beats refusing everything on a possibly wrong verdict.
   */
  pick(tried: readonly Target[] | null): Target | null {
    let candidates = this.available;
    if (candidates.length === 0) {
      candidates = this.enabled;
      if (candidates.length === 0) return null;
      this.metrics.panic();
    }
    return this.balancer.pick(candidates, tried);
  }

  /** Reports how an attempt on `target` ended (admitted by the breaker as `generation`). */
  finish(
    target: Target,
    generation: number,
    failure: UpstreamFailure | null,
    status: number,
    seconds: number,
  ): void {
    target.inflight--;
    let outcome: Outcome;
    if (failure === null) outcome = status >= 500 ? 'failure' : 'success';
    else if (failure === 'client-gone' || failure === 'body-too-large') outcome = 'cancelled';
    else {
      outcome = 'failure';
      this.metrics.upstreamError(failure);
    }
    if (outcome !== 'cancelled') this.metrics.attemptDuration(seconds);
    this.breaker.record(generation, outcome);
    if (outcome === 'success') target.consecutiveFailures = 0;
    else if (outcome === 'failure') this.passiveFailure(target);
  }

  private passiveFailure(target: Target): void {
    const passive = this.config.passiveHealth;
    if (passive.consecutiveErrors === 0 || target.ejectedUntil !== 0 || !this.targets.includes(target))
      return;
    if (++target.consecutiveFailures < passive.consecutiveErrors) return;
    if (!mayEject(passive, this.ejected, this.targets.length)) return;
    const now = this.clock.now();
    const duration = nextEjection(passive, target, now);
    target.ejectedUntil = now + duration;
    target.consecutiveFailures = 0;
    this.ejected++;
    target.ejectionTimer = setTimeout(() => this.readmit(target), duration);
    target.ejectionTimer.unref();
    this.logger.warn(
      { service: this.name, target: target.address, ejectForMs: duration },
      'target ejected after consecutive failures',
    );
    this.healthChanged();
  }

  private readmit(target: Target): void {
    target.ejectionTimer = null;
    if (target.ejectedUntil === 0) return;
    target.ejectedUntil = 0;
    target.backAt = this.clock.now();
    this.ejected--;
    this.healthChanged();
  }

  private healthChanged(): void {
    if (this.closed) return;
    this.available = this.targets.filter((t) => t.available);
    this.enabled = this.targets.filter((t) => !t.disabled);
  }

  /**
   * Takes a target out of rotation (or back in) on this process: a disabled target gets no new
   * request, not even when no other is available. False when the service has no such target.
   */
  setTargetEnabled(origin: string, enabled: boolean): boolean {
    const target = this.targets.find((t) => t.origin === origin || t.address === origin);
    if (target === undefined) return false;
    target.disabled = !enabled;
    if (enabled) this.disabledOrigins.delete(target.origin);
    else this.disabledOrigins.add(target.origin);
    this.healthChanged();
    return true;
  }

  /** Closes the circuit breaker now, with an empty window (an operator's decision). */
  resetBreaker(): void {
    this.breaker.reset();
  }

  /** Applies a new list of origins: keeps known targets, adds new ones, retires the rest. */
  private setOrigins(origins: readonly string[]): void {
    if (this.closed) return;
    const known = new Map(this.targets.map((t) => [t.origin, t]));
    const next = origins.map((origin) => known.get(origin) ?? this.addTarget(origin));
    const removed = this.targets.filter((t) => !origins.includes(t.origin));
    for (const t of next) t.disabled = this.disabledOrigins.has(t.origin);
    this.targets = next;
    this.ejected = next.filter((t) => t.ejectedUntil !== 0).length;
    this.available = next.filter((t) => t.available);
    this.enabled = next.filter((t) => !t.disabled);
    for (const t of removed) this.retire(t);
  }

  private addTarget(origin: string): Target {
    const target = new Target(origin, this.config, this.connect);
    const hc = this.config.healthCheck;
    if (hc) {
      target.check = new ActiveHealthCheck(origin, hc, () => this.healthChanged(), this.connect);
      target.check.start();
    }
    return target;
  }

  /** A removed target stops taking new requests; those in flight finish, then its pool closes. */
  private retire(target: Target): void {
    target.check?.stop();
    if (target.ejectionTimer) clearTimeout(target.ejectionTimer);
    void target.pool.close().catch(() => undefined);
  }

  snapshot() {
    const now = this.clock.now();
    const counts = this.breaker.counts();
    return {
      name: this.name,
      balancer: this.config.balancer,
      discovery: this.config.discovery ? { dns: this.config.discovery.dns } : { static: true },
      protocol: this.config.protocol,
      tls: tlsSnapshot(this.config.tls),
      breaker: {
        state: this.breaker.state,
        enabled: this.config.circuitBreaker.enabled,
        requests: counts.total,
        failures: counts.failed,
        retryAfterMs: this.breaker.retryAfterMs(),
      },
      panic: this.enabled.length > 0 && this.available.length === 0,
      targets: this.targets.map((t) => ({
        target: t.origin,
        healthy: t.available,
        disabled: t.disabled,
        inflight: t.inflight,
        activeCheck: t.check === null ? 'off' : t.check.healthy ? 'passing' : 'failing',
        lastCheckError: t.check?.lastError ?? null,
        ejected: t.ejectedUntil !== 0,
        ejectedForMs: t.ejectedUntil === 0 ? 0 : Math.max(0, t.ejectedUntil - now),
        consecutiveFailures: t.consecutiveFailures,
      })),
    };
  }

  /** Stops discovery and checks; lets in-flight requests finish, then closes the pools. */
  async close(): Promise<void> {
    this.shutdownTracking();
    await Promise.all(this.targets.map((t) => t.pool.close().catch(() => undefined)));
  }

  destroy(): Promise<void> {
    this.shutdownTracking();
    return Promise.all(this.targets.map((t) => t.pool.destroy().catch(() => undefined))).then(
      () => undefined,
    );
  }

  private shutdownTracking(): void {
    if (this.closed) return;
    this.closed = true;
    this.source.close();
    for (const t of this.targets) {
      t.check?.stop();
      if (t.ejectionTimer) clearTimeout(t.ejectionTimer);
    }
  }
}
