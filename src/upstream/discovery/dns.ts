/**
 * Targets from DNS (`discovery`), e.g. a headless Kubernetes Service, re-resolved on a timer.
 *
 * - A/AAAA (a name not starting with "_"): both families are asked in parallel; a family with no
 *   records (ENODATA) is just empty. Each address becomes `scheme://ip:port` with the configured
 *   port. The next lookup comes after `refresh`, or sooner when the smallest TTL is shorter, but
 *   never sooner than 1 s: a TTL of 0 must not turn into a query loop.
 * - SRV (a name starting with "_", e.g. `_http._tcp.orders.shop.svc.cluster.local`): each record's
 *   target name is resolved to A/AAAA through the same resolver, with the record's port. Only the
 *   records with the lowest priority value are kept: higher values are fallbacks (RFC 2782), to be
 *   used when all of the preferred ones are unreachable, which DNS cannot tell us and health
 *   checks handle. Weights are ignored: the balancer spreads the load over the kept targets.
 *   Node gives SRV records no TTL, so the next lookup comes after `refresh`, or sooner when an
 *   A/AAAA TTL of the targets is shorter. A target name that does not exist (NXDOMAIN, a pod gone
 *   before its SRV record) contributes nothing; any other error fails the whole lookup.
 * - A failed lookup (timeout, SERVFAIL, refused, NXDOMAIN) or an empty answer keeps the last known
 *   origins: losing every target because DNS hiccuped would turn a DNS problem into an outage.
 *   It is logged at warn once per failure streak, and at info when lookups succeed again.
 *
 * Names are asked as given (no search domains): configure the fully qualified name. The pure
 * parts (building origins, the next delay, what a lookup's outcome changes) are exported for
 * tests; `DnsDiscovery` is the thin timer-and-resolver shell around them.
 */
import type { RecordWithTtl, SrvRecord } from 'node:dns';
import { Resolver } from 'node:dns/promises';
import { isIPv6 } from 'node:net';
import type { DiscoveryConfig, DnsConfig } from '../../config/schema.js';
import type { Logger } from '../../observability/logger.js';
import type { Discovery } from './index.js';

/** the floor of a TTL-driven delay */
export const MIN_TTL_DELAY_MS = 1000;
/** `dns.timeout`'s default, for when the top-level `dns` section is absent */
const DEFAULT_TIMEOUT_MS = 2000;

type Scheme = DiscoveryConfig['scheme'];

/** The part of node's `Resolver` discovery uses (tests substitute a scripted one). */
export interface DnsLookup {
  resolve4(name: string, options: { ttl: true }): Promise<RecordWithTtl[]>;
  resolve6(name: string, options: { ttl: true }): Promise<RecordWithTtl[]>;
  resolveSrv(name: string): Promise<SrvRecord[]>;
  cancel(): void;
}

export type Endpoint = { readonly address: string; readonly port: number };

export type LookupOutcome =
  | { readonly ok: true; readonly origins: readonly string[]; readonly ttls: readonly number[] }
  | { readonly ok: false; readonly code: string };

export type DiscoveryState = { readonly origins: readonly string[]; readonly failing: boolean };

export const INITIAL_STATE: DiscoveryState = { origins: [], failing: false };

/** What one lookup's outcome does to the state, what to log, and when to look again. */
export type Step = {
  readonly state: DiscoveryState;
  readonly added: readonly string[];
  readonly removed: readonly string[];
  readonly log: { readonly level: 'warn'; readonly code: string } | { readonly level: 'info' } | undefined;
  readonly delayMs: number;
};

export function sortedUnique(list: Iterable<string>): string[] {
  return [...new Set(list)].sort();
}

/** `scheme://ip:port`, IPv6 in brackets, normalised like a static target (`URL.origin`). */
export function originOf(scheme: Scheme, address: string, port: number): string {
  const host = isIPv6(address) ? `[${address}]` : address;
  return new URL(`${scheme}://${host}:${port}`).origin;
}

export function buildOrigins(scheme: Scheme, endpoints: Iterable<Endpoint>): string[] {
  return sortedUnique(Array.from(endpoints, (e) => originOf(scheme, e.address, e.port)));
}

/** The records with the lowest priority value; "." targets ("no service here", RFC 2782) dropped. */
export function lowestPriority(records: readonly SrvRecord[]): SrvRecord[] {
  const usable = records.filter((r) => r.name !== '' && r.name !== '.');
  const lowest = Math.min(...usable.map((r) => r.priority));
  return usable.filter((r) => r.priority === lowest);
}

/** `min(refresh, max(1 s, smallest TTL))`; `refresh` when there is no TTL. */
export function nextDelay(refreshMs: number, ttlsSec: Iterable<number>): number {
  const ttl = Math.min(...ttlsSec);
  if (ttl === Infinity) return refreshMs;
  return Math.min(refreshMs, Math.max(MIN_TTL_DELAY_MS, ttl * 1000));
}

/** Both lists sorted and without duplicates, as `origins` always are. */
export function diffOrigins(
  previous: readonly string[],
  next: readonly string[],
): { added: string[]; removed: string[] } {
  const before = new Set(previous);
  const after = new Set(next);
  return {
    added: next.filter((o) => !before.has(o)),
    removed: previous.filter((o) => !after.has(o)),
  };
}

export function errorCode(err: unknown): string {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string')
    return err.code;
  return 'UNKNOWN';
}

export function applyOutcome(state: DiscoveryState, outcome: LookupOutcome, refreshMs: number): Step {
  if (!outcome.ok) return failed(state, outcome.code, refreshMs);
  if (outcome.origins.length === 0) return failed(state, 'ENODATA', refreshMs);
  const { added, removed } = diffOrigins(state.origins, outcome.origins);
  const changed = added.length > 0 || removed.length > 0;
  return {
    state: { origins: changed ? outcome.origins : state.origins, failing: false },
    added,
    removed,
    log: state.failing ? { level: 'info' } : undefined,
    delayMs: nextDelay(refreshMs, outcome.ttls),
  };
}

function failed(state: DiscoveryState, code: string, refreshMs: number): Step {
  return {
    state: { origins: state.origins, failing: true },
    added: [],
    removed: [],
    log: state.failing ? undefined : { level: 'warn', code },
    delayMs: refreshMs,
  };
}

/** A and AAAA in parallel; a family without records is empty, any other error fails the lookup. */
async function resolveAddresses(resolver: DnsLookup, name: string): Promise<RecordWithTtl[]> {
  const families = await Promise.allSettled([
    resolver.resolve4(name, { ttl: true }),
    resolver.resolve6(name, { ttl: true }),
  ]);
  const records: RecordWithTtl[] = [];
  for (const family of families) {
    if (family.status === 'fulfilled') records.push(...family.value);
    else if (errorCode(family.reason) !== 'ENODATA') throw family.reason;
  }
  return records;
}

async function resolveSrvTarget(resolver: DnsLookup, name: string): Promise<RecordWithTtl[]> {
  try {
    return await resolveAddresses(resolver, name);
  } catch (err) {
    if (errorCode(err) === 'ENOTFOUND') return [];
    throw err;
  }
}

/** One lookup, never rejecting: the origins and the TTLs that bound the next delay, or the error code. */
export async function lookupOrigins(resolver: DnsLookup, config: DiscoveryConfig): Promise<LookupOutcome> {
  try {
    if (!config.dns.startsWith('_')) {
      const port = config.port ?? (config.scheme === 'https' ? 443 : 80);
      const records = await resolveAddresses(resolver, config.dns);
      const origins = buildOrigins(
        config.scheme,
        records.map((r) => ({ address: r.address, port })),
      );
      return { ok: true, origins, ttls: records.map((r) => r.ttl) };
    }
    const srv = lowestPriority(await resolver.resolveSrv(config.dns));
    const names = sortedUnique(srv.map((r) => r.name));
    const addresses = new Map(
      await Promise.all(names.map(async (n) => [n, await resolveSrvTarget(resolver, n)] as const)),
    );
    const endpoints = srv.flatMap((r) =>
      (addresses.get(r.name) ?? []).map((a) => ({ address: a.address, port: r.port })),
    );
    const ttls = [...addresses.values()].flatMap((records) => records.map((r) => r.ttl));
    return { ok: true, origins: buildOrigins(config.scheme, endpoints), ttls };
  } catch (err) {
    return { ok: false, code: errorCode(err) };
  }
}

/** The servers of `dns` when given, else the system's (resolv.conf); c-ares's own retry on top. */
export function createResolver(dns: DnsConfig | undefined): Resolver {
  const resolver = new Resolver({ timeout: dns?.timeout ?? DEFAULT_TIMEOUT_MS, tries: 2 });
  if (dns && dns.servers.length > 0) resolver.setServers(dns.servers);
  return resolver;
}

export class DnsDiscovery implements Discovery {
  private state: DiscoveryState = INITIAL_STATE;
  private timer: NodeJS.Timeout | undefined;
  private onChange: ((origins: readonly string[]) => void) | undefined;
  private closed = false;
  private readonly first: Promise<void>;
  private firstDone: () => void = () => undefined;
  private readonly logger: Logger;

  constructor(
    service: string,
    private readonly config: DiscoveryConfig,
    private readonly resolver: DnsLookup,
    logger: Logger,
  ) {
    this.logger = logger.child({ service, dns: config.dns });
    this.first = new Promise((resolve) => (this.firstDone = resolve));
  }

  get origins(): readonly string[] {
    return this.state.origins;
  }

  start(onChange: (origins: readonly string[]) => void): void {
    if (this.onChange || this.closed) return;
    this.onChange = onChange;
    void this.lookup();
  }

  ready(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
    return Promise.race([this.first, timeout]).finally(() => clearTimeout(timer));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.resolver.cancel();
    // nobody waits forever for a lookup that will never be reported
    this.firstDone();
  }

  private async lookup(): Promise<void> {
    const outcome = await lookupOrigins(this.resolver, this.config);
    if (this.closed) return;
    const step = applyOutcome(this.state, outcome, this.config.refresh);
    this.state = step.state;
    this.report(step);
    this.firstDone();
    this.timer = setTimeout(() => void this.lookup(), step.delayMs);
    this.timer.unref();
  }

  private report(step: Step): void {
    const { origins } = step.state;
    if (step.log?.level === 'warn') {
      this.logger.warn(
        { code: step.log.code, targets: origins.length },
        'dns discovery lookup failed; keeping the last known targets',
      );
    } else if (step.log?.level === 'info') {
      this.logger.info({ targets: origins.length }, 'dns discovery lookups succeed again');
    }
    if (step.added.length === 0 && step.removed.length === 0) return;
    this.logger.info({ added: step.added, removed: step.removed }, 'dns discovery targets changed');
    try {
      this.onChange?.(origins);
    } catch (err) {
      // the next change must still be delivered: a throwing listener must not stop the timer
      this.logger.error({ err }, 'dns discovery listener failed');
    }
  }
}
