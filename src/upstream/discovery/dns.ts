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
 *   before its SRV record) contributes nothing.
 * - Each address query (a family of a name) stands on its own: one that fails (timeout, SERVFAIL,
 *   refused) while others are answered is replaced by the addresses it gave last time, and the
 *   answers are used. A resolver that answers A but refuses AAAA (dnsmasq without upstream
 *   servers does; some resolvers SERVFAIL AAAA) must not leave the service without targets. Such
 *   a partial failure is logged at warn once per streak of lookups that have one.
 * - A failed lookup (the SRV query fails, or every address query does: timeout, SERVFAIL,
 *   refused, NXDOMAIN) or an empty answer keeps the last known origins: losing every target
 *   because DNS hiccuped would turn a DNS problem into an outage. It is logged at warn once per
 *   failure streak, and at info when lookups succeed again.
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
import { sortedUnique, type Discovery } from './discovery.js';

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

/** The addresses each address query ("A name", "AAAA name") gave last, standing in when it fails. */
export type KnownAddresses = ReadonlyMap<string, readonly string[]>;

export const NO_KNOWN_ADDRESSES: KnownAddresses = new Map();

export type LookupOutcome =
  | {
      readonly ok: true;
      readonly origins: readonly string[];
      /** TTLs of the records answered this time (not of the last known ones standing in) */
      readonly ttls: readonly number[];
      /** the addresses of every query asked, answered now or (failed) last known */
      readonly known: KnownAddresses;
      /** the address queries that failed, e.g. "AAAA orders.svc": their last known addresses stand in */
      readonly failed: readonly string[];
      /** the error of the first failed query; null when none failed */
      readonly code: string | null;
    }
  | { readonly ok: false; readonly code: string };

/** none: every query answered; partial: some failed (last known stand in); all: the lookup failed */
export type Failing = 'none' | 'partial' | 'all';

export type DiscoveryState = {
  readonly origins: readonly string[];
  readonly failing: Failing;
  readonly known: KnownAddresses;
};

export const INITIAL_STATE: DiscoveryState = { origins: [], failing: 'none', known: NO_KNOWN_ADDRESSES };

/** A line to log: warn when a failure streak starts, info when it ends (`failed`: what still fails). */
export type StepLog =
  | { readonly level: 'warn'; readonly code: string; readonly failed?: readonly string[] }
  | { readonly level: 'info'; readonly failed?: readonly string[] };

/** What one lookup's outcome does to the state, what to log, and when to look again. */
export type Step = {
  readonly state: DiscoveryState;
  readonly added: readonly string[];
  readonly removed: readonly string[];
  readonly log: StepLog | undefined;
  readonly delayMs: number;
};

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
  if (outcome.origins.length === 0) return failed(state, outcome.code ?? 'ENODATA', refreshMs);
  const { added, removed } = diffOrigins(state.origins, outcome.origins);
  const changed = added.length > 0 || removed.length > 0;
  const failing: Failing = outcome.failed.length > 0 ? 'partial' : 'none';
  return {
    state: { origins: changed ? outcome.origins : state.origins, failing, known: outcome.known },
    added,
    removed,
    log: streakLog(state.failing, failing, outcome.failed, outcome.code),
    delayMs: nextDelay(refreshMs, outcome.ttls),
  };
}

/** Logged when the kind of failure changes: a streak of partial failures is told once. */
function streakLog(
  before: Failing,
  after: 'none' | 'partial',
  failedQueries: readonly string[],
  code: string | null,
): StepLog | undefined {
  if (after === 'none') return before === 'none' ? undefined : { level: 'info' };
  if (before === 'none') return { level: 'warn', code: code ?? 'UNKNOWN', failed: failedQueries };
  if (before === 'all') return { level: 'info', failed: failedQueries };
  return undefined;
}

function failed(state: DiscoveryState, code: string, refreshMs: number): Step {
  return {
    state: { origins: state.origins, failing: 'all', known: state.known },
    added: [],
    removed: [],
    log: state.failing === 'all' ? undefined : { level: 'warn', code },
    delayMs: refreshMs,
  };
}

/**
 * One lookup's address answers, query by query. A query that fails yields the addresses it gave
 * last time (none if it never answered), and is listed in `failed`.
 */
export class AddressAnswers {
  readonly known = new Map<string, readonly string[]>();
  readonly ttls: number[] = [];
  readonly failed: string[] = [];
  code: string | null = null;
  /** queries answered, with records or with none */
  answered = 0;

  constructor(private readonly previous: KnownAddresses) {}

  /**
   * The addresses of `query` ("A name" or "AAAA name") from its settled result. ENODATA is an
   * answer without records; so is NXDOMAIN when `missingIsEmpty` (an SRV target that is gone).
   */
  take(
    query: string,
    result: PromiseSettledResult<RecordWithTtl[]>,
    missingIsEmpty: boolean,
  ): readonly string[] {
    if (result.status === 'fulfilled') return this.answer(query, result.value);
    const code = errorCode(result.reason);
    if (code === 'ENODATA' || (missingIsEmpty && code === 'ENOTFOUND')) return this.answer(query, []);
    this.failed.push(query);
    this.code ??= code;
    const last = this.previous.get(query);
    if (last === undefined) return [];
    this.known.set(query, last);
    return last;
  }

  private answer(query: string, records: readonly RecordWithTtl[]): readonly string[] {
    this.answered++;
    const addresses = records.map((r) => r.address);
    for (const r of records) this.ttls.push(r.ttl);
    this.known.set(query, addresses);
    return addresses;
  }
}

/** A and AAAA of `name` in parallel, each taken on its own by `answers`. */
async function resolveAddresses(
  resolver: DnsLookup,
  name: string,
  answers: AddressAnswers,
  missingIsEmpty: boolean,
): Promise<string[]> {
  const [v4, v6] = await Promise.allSettled([
    resolver.resolve4(name, { ttl: true }),
    resolver.resolve6(name, { ttl: true }),
  ]);
  return [
    ...answers.take(`A ${name}`, v4, missingIsEmpty),
    ...answers.take(`AAAA ${name}`, v6, missingIsEmpty),
  ];
}

/**
 * One lookup, never rejecting: the origins, the TTLs that bound the next delay and what each
 * address query gave (with `known`, the last answers, standing in for the queries that fail), or
 * the error code when the lookup failed as a whole.
 */
export async function lookupOrigins(
  resolver: DnsLookup,
  config: DiscoveryConfig,
  known: KnownAddresses = NO_KNOWN_ADDRESSES,
): Promise<LookupOutcome> {
  try {
    const answers = new AddressAnswers(known);
    let endpoints: Endpoint[];
    if (!config.dns.startsWith('_')) {
      const port = config.port ?? (config.scheme === 'https' ? 443 : 80);
      const addresses = await resolveAddresses(resolver, config.dns, answers, false);
      endpoints = addresses.map((address) => ({ address, port }));
    } else {
      const srv = lowestPriority(await resolver.resolveSrv(config.dns));
      const names = sortedUnique(srv.map((r) => r.name));
      const addresses = new Map(
        await Promise.all(
          names.map(async (n) => [n, await resolveAddresses(resolver, n, answers, true)] as const),
        ),
      );
      endpoints = srv.flatMap((r) =>
        (addresses.get(r.name) ?? []).map((address) => ({ address, port: r.port })),
      );
    }
    if (answers.answered === 0 && answers.code !== null) return { ok: false, code: answers.code };
    return {
      ok: true,
      origins: buildOrigins(config.scheme, endpoints),
      ttls: answers.ttls,
      known: answers.known,
      failed: answers.failed,
      code: answers.code,
    };
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
    const outcome = await lookupOrigins(this.resolver, this.config, this.state.known);
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
    const log = step.log;
    if (log?.level === 'warn') {
      if (log.failed === undefined) {
        this.logger.warn(
          { code: log.code, targets: origins.length },
          'dns discovery lookup failed; keeping the last known targets',
        );
      } else {
        this.logger.warn(
          { code: log.code, failed: log.failed, targets: origins.length },
          'dns discovery lookup failed in part; using the answers, and the last known addresses of the failed queries',
        );
      }
    } else if (log?.level === 'info') {
      if (log.failed === undefined)
        this.logger.info({ targets: origins.length }, 'dns discovery lookups succeed again');
      else
        this.logger.info(
          { failed: log.failed, targets: origins.length },
          'dns discovery lookups succeed again, in part',
        );
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
