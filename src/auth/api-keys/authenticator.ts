/**
 * API keys (`gh_<id>_<secret>` in the configured header; never from the query string).
 *
 * A key's record is looked up by its id part (`KeyLoader`: batched, capped, failing fast while
 * the database is down) and cached in-process (`KeyCache`): `cacheTtl` for a known id,
 * `negativeTtl` for an unknown one, in separately bounded maps. The presented key is checked
 * against the record with a constant-time HMAC comparison, then revocation and expiry, compared
 * with the database's clock (the read's `now()` plus the monotonic time since), never with this
 * instance's wall clock. Every duration here is monotonic.
 *
 * Revocations arrive by broadcast (PostgreSQL LISTEN/NOTIFY) and drop the id at once; a
 * lookup that started before the drop still answers the requests that joined it, but never
 * fills the cache nor serves a later request. While the listening connection is not confirmed
 * alive by its heartbeat, a record is trusted for `unconfirmedTtl` past the later of its read and
 * the last confirmation, instead of `cacheTtl`. When the database cannot be reached, a cached
 * record keeps working (up to `maxStale`), an uncached id gets `unavailable` (503).
 * Last-used instants are collected in memory and written in batches every `flushInterval`,
 * never on the request path.
 */
import type { IncomingMessage } from 'node:http';
import { systemClock, type Clock } from '../../clock.js';
import type { ApiKeyConfig, GatewayConfig } from '../../config/schema.js';
import type { Logger } from '../../observability/logger.js';
import { isActive, openKeyRepository, type KeyRepository } from '../../stores/database.js';
import { ABSENT, type AuthAttempt, type Authenticator } from '../types.js';
import { cachedKey, dbNow, KeyCache, type CachedKey } from './cache.js';
import { keyMatches, parseKey } from './format.js';
import { KeyLoader, type Read } from './loader.js';

export type ApiKeyAuthOptions = {
  cacheTtl?: number;
  negativeTtl?: number;
  /** while the revocation broadcast is not confirmed alive, how long a record is trusted */
  unconfirmedTtl?: number;
  maxStale?: number;
  flushInterval?: number;
  /** bound on cached records */
  maxEntries?: number;
  /** bound on cached unknown ids (apart: made-up ids never push records out) */
  maxUnknown?: number;
  /** after a failed lookup, how long lookups fail fast before one probe tries the store again */
  retryAfter?: number;
  /** reads at once (below the pool's size) */
  maxInFlight?: number;
  /** ids per read when lookups queue */
  batchSize?: number;
  /** waiting ids beyond which a lookup is refused at once (503) */
  maxQueued?: number;
  /** how long a lookup may wait for a read to start before it is refused (503) */
  maxWait?: number;
  /** bound on the start-time migration */
  readyTimeout?: number;
  /** durations are its `now()` (tests inject their own) */
  clock?: Clock;
};

type Resolved = Required<Omit<ApiKeyAuthOptions, 'clock'>>;

/** One lookup of one id; `current` false once an invalidation made its answer too old to keep. */
type Lookup = { current: boolean; readonly result: Promise<CachedKey | null | 'unavailable'> };

const MALFORMED: AuthAttempt = Object.freeze({ kind: 'invalid', reason: 'malformed api key' });
const UNKNOWN: AuthAttempt = Object.freeze({ kind: 'invalid', reason: 'unknown api key' });
const WRONG: AuthAttempt = Object.freeze({ kind: 'invalid', reason: 'wrong api key' });
const INACTIVE: AuthAttempt = Object.freeze({ kind: 'invalid', reason: 'revoked or expired api key' });
const UNAVAILABLE: AuthAttempt = Object.freeze({ kind: 'unavailable', reason: 'key store unavailable' });

export function createApiKeyAuthenticator(
  apiKey: ApiKeyConfig,
  config: GatewayConfig,
  logger: Logger,
): Authenticator {
  // SQLite has no broadcast (`gatehouse keys revoke` is another process, as are other workers):
  // a local lookup costs microseconds, so records are re-read after 500 ms instead.
  const local = config.database.url === undefined;
  return new ApiKeyAuthenticator(
    apiKey,
    openKeyRepository(config.database),
    logger,
    local ? { cacheTtl: 500, negativeTtl: 500 } : {},
  );
}

export class ApiKeyAuthenticator implements Authenticator {
  readonly method = 'apiKey';
  readonly challenge: string;
  private readonly header: string;
  private readonly secret: string;
  private readonly cache: KeyCache;
  private readonly loader: KeyLoader;
  private readonly pending = new Map<string, Lookup>();
  private used = new Map<string, Date>();
  private readonly flushTimer: NodeJS.Timeout;
  private readonly opts: Resolved;
  private readonly clock: Clock;
  private repo: KeyRepository | null = null;
  private readonly repoReady: Promise<KeyRepository | null>;
  private closed = false;
  /** the store broadcasts revocations: records are trusted long only while it is confirmed */
  private watching = false;
  /** monotonic ms up to which every revocation notice has been received */
  private confirmedAt = Number.NEGATIVE_INFINITY;
  private listenerLost = false;

  constructor(
    apiKey: ApiKeyConfig,
    repository: KeyRepository | Promise<KeyRepository>,
    private readonly logger: Logger,
    options: ApiKeyAuthOptions = {},
  ) {
    this.header = apiKey.header.toLowerCase();
    this.secret = apiKey.secret;
    this.challenge = `ApiKey header="${this.header}"`;
    this.clock = options.clock ?? systemClock;
    this.opts = {
      cacheTtl: options.cacheTtl ?? 30_000,
      negativeTtl: options.negativeTtl ?? 5_000,
      unconfirmedTtl: options.unconfirmedTtl ?? 3_000,
      maxStale: options.maxStale ?? 3_600_000,
      flushInterval: options.flushInterval ?? 5_000,
      maxEntries: options.maxEntries ?? 100_000,
      maxUnknown: options.maxUnknown ?? 10_000,
      retryAfter: options.retryAfter ?? 1_000,
      maxInFlight: options.maxInFlight ?? 8,
      batchSize: options.batchSize ?? 64,
      maxQueued: options.maxQueued ?? 10_000,
      maxWait: options.maxWait ?? 1_000,
      readyTimeout: options.readyTimeout ?? 5_000,
    };
    this.cache = new KeyCache(this.opts.maxEntries, this.opts.maxUnknown);
    this.loader = new KeyLoader((ids) => this.read(ids), this.opts, this.clock, {
      down: (err) => this.logger.warn({ err: String(err) }, 'api keys: key store unavailable'),
      up: () => this.logger.info('api keys: key store reachable again'),
    });
    this.repoReady = Promise.resolve(repository).then(
      (r) => {
        this.repo = r;
        if (r.watchRevocations !== undefined) {
          this.watching = true;
          r.watchRevocations({
            revoked: (id) => this.invalidate(id),
            reset: () => this.invalidateAll(),
            alive: (ageMs) => this.confirmed(ageMs),
            lost: (reason) => this.lost(reason),
          });
        }
        return r;
      },
      (err: unknown) => {
        this.logger.error({ err }, 'api keys: cannot open the key store');
        return null;
      },
    );
    this.flushTimer = setInterval(() => void this.flush(), this.opts.flushInterval);
    this.flushTimer.unref();
  }

  /** Runs the migrations (bounded); a database that is down does not stop the gateway. */
  async ready(): Promise<void> {
    const repo = await this.repoReady;
    if (repo === null) return;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((_, reject) => {
      timer = setTimeout(() => reject(new Error('timed out')), this.opts.readyTimeout);
    });
    try {
      await Promise.race([this.migrate(repo), timeout]);
    } catch (err) {
      this.logger.warn(
        { err: String(err) },
        'api keys: migration failed; keys are checked once the database is back',
      );
    } finally {
      clearTimeout(timer);
    }
  }

  authenticate(req: IncomingMessage): AuthAttempt | Promise<AuthAttempt> {
    const raw = req.headers[this.header];
    if (raw === undefined) return ABSENT;
    if (typeof raw !== 'string') return MALFORMED;
    const parsed = parseKey(raw);
    if (parsed === null) return MALFORMED;
    const id = parsed.id;
    const now = this.clock.now();
    const entry = this.cache.get(id);
    if (entry !== undefined) {
      if (this.trusted(entry, now)) return this.check(entry, raw, now);
    } else {
      const unknownSince = this.cache.unknownSince(id);
      if (unknownSince !== undefined && now - unknownSince < this.opts.negativeTtl) return UNKNOWN;
    }
    return this.lookup(id, entry !== undefined).then((found) => {
      const t = this.clock.now();
      if (found === null) return UNKNOWN;
      if (found !== 'unavailable') return this.check(found, raw, t); // what this lookup read
      // the store is down or overloaded: a record read recently enough still answers, unless a
      // revocation notice dropped it meanwhile
      const stale = this.cache.get(id);
      if (stale !== undefined && t - stale.readAt < this.opts.maxStale) return this.check(stale, raw, t);
      return UNAVAILABLE;
    });
  }

  /** Drops one id (a revocation or rotation): lookups already running no longer count for it. */
  invalidate(id: string): void {
    const running = this.pending.get(id);
    if (running !== undefined) {
      running.current = false;
      this.pending.delete(id);
    }
    this.cache.drop(id);
  }

  /** Notifications may have been missed: every record is re-read before it is trusted again. */
  invalidateAll(): void {
    for (const running of this.pending.values()) running.current = false;
    this.pending.clear();
    this.cache.suspectAll();
  }

  /** May this record be used without reading it again? */
  private trusted(entry: CachedKey, now: number): boolean {
    if (!entry.fresh || now - entry.readAt >= this.opts.cacheTtl) return false;
    // with a broadcast, past unconfirmedTtl only while the listener vouches for the time since
    return !this.watching || now - Math.max(entry.readAt, this.confirmedAt) < this.opts.unconfirmedTtl;
  }

  private confirmed(ageMs: number): void {
    this.confirmedAt = Math.max(this.confirmedAt, this.clock.now() - ageMs);
    if (this.listenerLost) {
      this.listenerLost = false;
      this.logger.info('api keys: revocation listener confirmed again');
    }
  }

  private lost(reason: string): void {
    if (this.listenerLost) return;
    this.listenerLost = true;
    this.logger.warn(
      { reason },
      `api keys: revocation listener lost; records are re-read every ${this.opts.unconfirmedTtl} ms until it is back`,
    );
  }

  private check(entry: CachedKey, key: string, now: number): AuthAttempt {
    const record = entry.record;
    if (!keyMatches(this.secret, key, record.hash)) return WRONG;
    const at = dbNow(entry, now);
    if (!isActive(record, at)) return INACTIVE;
    if (this.used.size < this.opts.maxEntries || this.used.has(record.id))
      this.used.set(record.id, new Date(at));
    return { kind: 'ok', consumer: entry.consumer };
  }

  /** the schema, once: retried by lookups when it failed at start (the database was down) */
  private migrated: Promise<void> | null = null;
  private migrate(repo: KeyRepository): Promise<void> {
    this.migrated ??= repo.migrate().catch((err: unknown) => {
      this.migrated = null;
      throw err;
    });
    return this.migrated;
  }

  private read(ids: string[]) {
    return this.repoReady.then((repo) => {
      if (repo === null) throw new Error('the key store could not be opened');
      return this.migrate(repo).then(() => repo.readMany(ids));
    });
  }

  /** One lookup per id at a time; its answer is cached only if no invalidation came meanwhile. */
  private lookup(id: string, known: boolean): Promise<CachedKey | null | 'unavailable'> {
    const running = this.pending.get(id);
    if (running !== undefined) return running.result;
    const lookup: Lookup = {
      current: true,
      result: this.loader.load(id, known).then((read) => {
        if (this.pending.get(id) === lookup) this.pending.delete(id);
        if (read === 'unavailable') return read;
        return this.settle(id, read, lookup.current);
      }),
    };
    this.pending.set(id, lookup);
    return lookup.result;
  }

  private settle(id: string, read: Read, keep: boolean): CachedKey | null {
    if (read.record === null) {
      if (keep) this.cache.setUnknown(id, read.readAt);
      return null;
    }
    const entry = cachedKey(read.record, read.readAt, read.dbTime);
    if (keep) this.cache.setKnown(id, entry);
    return entry;
  }

  /** writes the collected last-used instants in one batch; kept for the next try on failure */
  async flush(): Promise<void> {
    if (this.used.size === 0 || this.repo === null) return;
    const batch = this.used;
    this.used = new Map();
    try {
      await this.repo.touch(batch);
    } catch (err) {
      this.logger.warn({ err: String(err) }, 'api keys: could not record last use');
      for (const [id, at] of batch) {
        if (!this.used.has(id) && this.used.size < this.opts.maxEntries) this.used.set(id, at);
      }
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.flushTimer);
    const repo = await this.repoReady;
    if (repo === null) return;
    await Promise.race([this.flush(), new Promise((r) => setTimeout(r, 1000).unref())]);
    await repo.close();
  }
}
