/**
 * API keys (`gh_<id>_<secret>` in the configured header; never from the query string).
 *
 * A key's record is looked up by its id part and cached in-process: `cacheTtl` for a known id,
 * `negativeTtl` for an unknown one (a flood of made-up ids costs one query per id and TTL).
 * The presented key is checked against the record with a constant-time HMAC comparison, then
 * revocation and expiry. When the database cannot be reached, a cached record keeps working
 * (up to `maxStale`), an uncached id gets `unavailable` (503). Revocations arrive by broadcast
 * (PostgreSQL LISTEN/NOTIFY) and drop the id from the cache at once. Last-used instants are
 * collected in memory and written in batches every `flushInterval`, never on the request path.
 */
import type { IncomingMessage } from 'node:http';
import type { ApiKeyConfig, GatewayConfig } from '../../config/schema.js';
import type { Logger } from '../../observability/logger.js';
import { isActive, openKeyRepository, type ApiKeyRecord, type KeyRepository } from '../../stores/database.js';
import { ABSENT, type AuthAttempt, type Authenticator, type Consumer } from '../types.js';
import { keyMatches, parseKey } from './format.js';

export type ApiKeyAuthOptions = {
  cacheTtl?: number;
  negativeTtl?: number;
  maxStale?: number;
  flushInterval?: number;
  maxEntries?: number;
  /** after a failed lookup, how long lookups fail fast before the store is tried again */
  retryAfter?: number;
  /** bound on the start-time migration */
  readyTimeout?: number;
};

/** `at`: when it was read (bounds its use while the store is down); `fresh`: false once invalidated */
type Entry = { record: ApiKeyRecord | null; consumer: Consumer | null; at: number; fresh: boolean };

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
  private readonly cache = new Map<string, Entry>();
  private readonly pending = new Map<string, Promise<ApiKeyRecord | null | 'unavailable'>>();
  private used = new Map<string, Date>();
  /** bumped by every invalidation: a lookup started before it does not fill the cache */
  private epoch = 0;
  private readonly flushTimer: NodeJS.Timeout;
  private readonly opts: Required<ApiKeyAuthOptions>;
  private repo: KeyRepository | null = null;
  private readonly repoReady: Promise<KeyRepository | null>;
  private closed = false;
  /** after a failed lookup, further lookups fail at once until then (no request waits on a dead store) */
  private storeDownUntil = 0;

  constructor(
    apiKey: ApiKeyConfig,
    repository: KeyRepository | Promise<KeyRepository>,
    private readonly logger: Logger,
    options: ApiKeyAuthOptions = {},
  ) {
    this.header = apiKey.header.toLowerCase();
    this.secret = apiKey.secret;
    this.challenge = `ApiKey header="${this.header}"`;
    this.opts = {
      cacheTtl: options.cacheTtl ?? 30_000,
      negativeTtl: options.negativeTtl ?? 5_000,
      maxStale: options.maxStale ?? 3_600_000,
      flushInterval: options.flushInterval ?? 5_000,
      maxEntries: options.maxEntries ?? 100_000,
      readyTimeout: options.readyTimeout ?? 5_000,
      retryAfter: options.retryAfter ?? 1_000,
    };
    this.repoReady = Promise.resolve(repository).then(
      (r) => {
        this.repo = r;
        r.watchRevocations?.(
          (id) => this.invalidate(id),
          () => this.invalidateAll(),
        );
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
    const now = Date.now();
    const entry = this.cache.get(parsed.id);
    if (
      entry !== undefined &&
      entry.fresh &&
      now - entry.at < (entry.record ? this.opts.cacheTtl : this.opts.negativeTtl)
    ) {
      return this.check(entry, raw, now);
    }
    return this.lookup(parsed.id).then((found) => {
      const t = Date.now();
      if (found !== 'unavailable') return this.check(this.cache.get(parsed.id) ?? entryOf(found, t), raw, t);
      // the store is down: a record seen recently enough still answers
      if (entry?.record && t - entry.at < this.opts.maxStale) return this.check(entry, raw, t);
      return UNAVAILABLE;
    });
  }

  /** drops one id from the cache (a revocation or rotation elsewhere) */
  invalidate(id: string): void {
    this.epoch++;
    this.cache.delete(id);
  }

  invalidateAll(): void {
    this.epoch++;
    // keep records for the database-down fallback, but make them stale: refetched on next use
    for (const entry of this.cache.values()) entry.fresh = false;
  }

  private check(entry: Entry, key: string, now: number): AuthAttempt {
    const record = entry.record;
    if (record === null || entry.consumer === null) return UNKNOWN;
    if (!keyMatches(this.secret, key, record.hash)) return WRONG;
    if (!isActive(record, now)) return INACTIVE;
    if (this.used.size < this.opts.maxEntries || this.used.has(record.id))
      this.used.set(record.id, new Date(now));
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

  private lookup(id: string): Promise<ApiKeyRecord | null | 'unavailable'> {
    const inFlight = this.pending.get(id);
    if (inFlight) return inFlight;
    if (Date.now() < this.storeDownUntil) return Promise.resolve('unavailable');
    const epoch = this.epoch;
    const p = this.repoReady
      .then((repo): Promise<ApiKeyRecord | null> => {
        if (repo === null) throw new Error('the key store could not be opened');
        return this.migrate(repo).then(() => repo.get(id));
      })
      .then(
        (record): ApiKeyRecord | null | 'unavailable' => {
          if (epoch === this.epoch) this.remember(id, entryOf(record, Date.now()));
          return record;
        },
        (err: unknown) => {
          if (Date.now() >= this.storeDownUntil) {
            this.logger.warn({ err: String(err) }, 'api keys: key store unavailable');
          }
          this.storeDownUntil = Date.now() + this.opts.retryAfter;
          return 'unavailable' as const;
        },
      )
      .finally(() => this.pending.delete(id));
    this.pending.set(id, p);
    return p;
  }

  private remember(id: string, entry: Entry): void {
    this.cache.delete(id);
    if (this.cache.size >= this.opts.maxEntries) {
      const oldest = this.cache.keys().next();
      if (!oldest.done) this.cache.delete(oldest.value);
    }
    this.cache.set(id, entry);
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

function entryOf(record: ApiKeyRecord | null, at: number): Entry {
  return {
    record,
    consumer: record
      ? Object.freeze({ id: record.id, tier: record.tier, roles: Object.freeze([...record.roles]) })
      : null,
    at,
    fresh: true,
  };
}
