/**
 * Token revocation (`auth.jwt.revocation`): a denylist of token ids (`jti`) and of subjects
 * (`sub`: every token of it issued up to an instant), kept in Redis and held by every instance
 * in memory, so the per-request check is two Map lookups and no Redis call.
 *
 * Redis layout (one hash tag, so one slot of a Cluster holds all of it and a script may touch
 * both sets):
 * - `<prefix>{revoked}:jti`: sorted set, member = jti, score = when the entry may go (ms);
 * - `<prefix>{revoked}:sub`: sorted set, member = sub, score = the revocation instant (ms), the
 *   entry kept for `maxTokenLifetime` + `clockTolerance` after it;
 * each write drops the members past their time and sets the key's TTL to its newest entry's, so
 * an idle denylist leaves Redis on its own. Every instant is Redis's (`TIME` in the write
 * script): one clock for all instances, whatever their own clocks say.
 *
 * Replication: a write is published on `<prefix>revoked` (PUBLISH, cluster-wide on a Cluster);
 * every instance applies what it hears at once, and reads both sets in full at start (before it
 * is ready), whenever its subscriber connection is ready again (it may have missed messages
 * while away) and every `resyncInterval` (a message lost any other way). Entries are only ever
 * added: applying one twice, or out of order, changes nothing.
 */
import type { Cluster, Redis } from 'ioredis';
import type { RevocationConfig } from '../config.js';
import type { Logger } from '../../observability/logger.js';
import { connectRedis, type RedisSettings } from '../../stores/redis.js';
import { systemClock, type Clock } from '../../clock.js';

/** The `invalid` reason of a revoked token (the authenticate stage answers `token_revoked`). */
export const TOKEN_REVOKED = 'token_revoked';

/** longest `jti` or `sub` the denylist takes (the verifier refuses a longer `sub`) */
export const MAX_ID_LENGTH = 256;

/** what `check` says: the token may pass, it is revoked, or the denylist cannot tell */
export const PASS = 0;
export const REVOKED = 1;
export const UNKNOWN = 2;
export type Verdict = typeof PASS | typeof REVOKED | typeof UNKNOWN;

/** The in-memory denylist: what the hot path reads. */
export class Denylist {
  /** jti → when the entry may go (ms, Redis's clock) */
  readonly jtis = new Map<string, number>();
  /** sub → the revocation instant (ms, Redis's clock): tokens issued up to it are revoked */
  readonly subjects = new Map<string, number>();

  addJti(jti: string, untilMs: number): void {
    const was = this.jtis.get(jti);
    if (was === undefined || was < untilMs) this.jtis.set(jti, untilMs);
  }

  addSubject(sub: string, atMs: number): void {
    const was = this.subjects.get(sub);
    if (was === undefined || was < atMs) this.subjects.set(sub, atMs);
  }

  /**
   * Whether a token is revoked. `iat` has a precision of one second: a token issued in the
   * second of the revocation may be older than it, so it is revoked too (a client gets a new
   * token a second later). A token without `iat` cannot be dated: revoked while its subject is.
   */
  revoked(sub: string, jti: string | null, iat: number | null): boolean {
    if (jti !== null && this.jtis.has(jti)) return true;
    const at = this.subjects.get(sub);
    return at !== undefined && (iat === null || iat * 1000 <= at);
  }

  /** drops what has outlived every token it could concern (`subjectKeepMs` after the revocation) */
  prune(wallNow: number, subjectKeepMs: number): void {
    for (const [jti, until] of this.jtis) if (until <= wallNow) this.jtis.delete(jti);
    for (const [sub, at] of this.subjects) if (at + subjectKeepMs <= wallNow) this.subjects.delete(sub);
  }
}

export type RevocationResult = {
  /** Redis's clock at the revocation (ms) */
  readonly revokedAt: number;
  /** when the entry leaves the denylist (ms) */
  readonly keptUntil: number;
};

export type RevocationStats = {
  readonly jtis: number;
  readonly subjects: number;
  /** seconds since the last complete read of the denylist (null: never) */
  readonly resyncAgeSeconds: number | null;
  readonly loaded: boolean;
};

/** What the verifier asks on every request. */
export type RevocationCheck = { check(sub: string, jti: string | null, iat: number | null): Verdict };

// KEYS[1] the jti set; ARGV: jti, keep (ms), the token's own end (ms, 0 = unknown)
const REVOKE_JTI = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local untilMs = now + tonumber(ARGV[2])
local tokenEnd = tonumber(ARGV[3])
if tokenEnd > 0 and tokenEnd < untilMs then untilMs = tokenEnd end
if untilMs <= now then return {now, now} end
redis.call('ZADD', KEYS[1], 'GT', untilMs, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], tonumber(last[2]) - now + 1000)
return {now, tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))}
`;

// KEYS[1] the subject set; ARGV: sub, keep (ms)
const REVOKE_SUBJECT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local keep = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], 'GT', now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - keep)
redis.call('PEXPIRE', KEYS[1], keep + 1000)
return {now, now + keep}
`;

type ScriptClient = (Redis | Cluster) & {
  revokeJti(key: string, jti: string, keepMs: number, tokenEndMs: number): Promise<[number, number]>;
  revokeSubject(key: string, sub: string, keepMs: number): Promise<[number, number]>;
};

/** How long the start waits for the first read of the denylist before going on without it. */
export const READY_WAIT_MS = 5000;
/** the retry period while the denylist was never read, or the last read failed */
const RETRY_MS = 1000;
/** the client's own command timeout: a resync reads the whole denylist */
const COMMAND_TIMEOUT_MS = 2000;

export type RevocationOptions = {
  readonly redis: { readonly url: string } | { readonly cluster: readonly string[] };
  readonly config: RevocationConfig;
  /** `auth.jwt.clockTolerance`: a token lives that much past its `exp` */
  readonly toleranceMs: number;
  readonly logger: Logger;
  readonly clock?: Clock;
  /**
   * the denylist this one replaces (a reload that rebuilt the JWT authenticator): its entries
   * and state are taken over, so the new one serves at once, also while Redis is unreachable
   */
  readonly seed?: TokenRevocations | null;
};

export class TokenRevocations implements RevocationCheck {
  readonly denylist = new Denylist();
  readonly jtiKey: string;
  readonly subjectKey: string;
  readonly channel: string;
  /** how long an entry is kept after its revocation: `maxTokenLifetime` + `clockTolerance` */
  readonly keepMs: number;
  private readonly toleranceMs: number;
  private readonly resyncIntervalMs: number;
  private readonly client: ScriptClient;
  private readonly subscriber: Redis | Cluster;
  private readonly failOpen: boolean;
  private readonly log: Logger;
  private readonly clock: Clock;
  private loaded = false;
  private subscribed = false;
  /** monotonic ms of the last complete read */
  private lastResync: number | null = null;
  /** whether the denylist was read once (or taken over from one that was) */
  get isLoaded(): boolean {
    return this.loaded;
  }
  /** monotonic ms of the last complete read (null: never) */
  get lastResyncAt(): number | null {
    return this.lastResync;
  }
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private resyncing: Promise<boolean> | null = null;
  private readonly loadedWaiters = new Set<() => void>();

  constructor(options: RevocationOptions) {
    const { config, redis } = options;
    this.keepMs = config.maxTokenLifetime + options.toleranceMs;
    this.toleranceMs = options.toleranceMs;
    this.resyncIntervalMs = config.resyncInterval;
    this.jtiKey = `${config.keyPrefix}{revoked}:jti`;
    this.subjectKey = `${config.keyPrefix}{revoked}:sub`;
    this.channel = `${config.keyPrefix}revoked`;
    this.failOpen = config.onUnavailable === 'open';
    this.log = options.logger.child({ component: 'token-revocation' });
    this.clock = options.clock ?? systemClock;
    const settings: RedisSettings =
      'cluster' in redis
        ? { cluster: redis.cluster, timeout: COMMAND_TIMEOUT_MS }
        : { url: redis.url, timeout: COMMAND_TIMEOUT_MS };
    const seed = options.seed;
    if (seed && seed.jtiKey === this.jtiKey) {
      for (const [jti, until] of seed.denylist.jtis) this.denylist.addJti(jti, until);
      for (const [sub, at] of seed.denylist.subjects) this.denylist.addSubject(sub, at);
      this.loaded = seed.isLoaded;
      this.lastResync = seed.lastResyncAt;
    }
    this.client = connectRedis(settings) as ScriptClient;
    this.client.defineCommand('revokeJti', { numberOfKeys: 1, lua: REVOKE_JTI });
    this.client.defineCommand('revokeSubject', { numberOfKeys: 1, lua: REVOKE_SUBJECT });
    this.subscriber = connectRedis(settings);
    this.subscriber.on('message', (channel: string, message: string) => {
      if (channel === this.channel) this.apply(message);
    });
    // after a (re)connection: subscribe, then read everything (messages may have been missed)
    this.subscriber.on('ready', () => void this.onSubscriberReady());
    this.subscriber.on('close', () => {
      if (this.subscribed) this.log.warn('denylist subscription lost; revocations arrive at the next resync');
      this.subscribed = false;
    });
    if (this.subscriber.status === 'ready') void this.onSubscriberReady();
    this.schedule(0);
  }

  check(sub: string, jti: string | null, iat: number | null): Verdict {
    if (!this.loaded && !this.failOpen) return UNKNOWN;
    return this.denylist.revoked(sub, jti, iat) ? REVOKED : PASS;
  }

  /** resolves once the denylist was read (or after `READY_WAIT_MS`: the start goes on) */
  ready(waitMs = READY_WAIT_MS): Promise<void> {
    if (this.loaded) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.loadedWaiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, waitMs);
      this.loadedWaiters.add(done);
    });
  }

  /**
   * `/readyz`: true once loaded and in touch; 'degraded' when it serves a denylist that may be
   * behind (no subscription, or no resync for three intervals), or serves without one (`open`);
   * false while it never read it and the policy is `closed`.
   */
  readiness(): { tokenRevocation: boolean | 'degraded' } {
    if (!this.loaded) return { tokenRevocation: this.failOpen ? 'degraded' : false };
    const fresh = this.lastResync !== null && this.clock.now() - this.lastResync < 3 * this.resyncIntervalMs;
    return { tokenRevocation: this.subscribed && fresh ? true : 'degraded' };
  }

  stats(): RevocationStats {
    return {
      jtis: this.denylist.jtis.size,
      subjects: this.denylist.subjects.size,
      resyncAgeSeconds: this.lastResync === null ? null : (this.clock.now() - this.lastResync) / 1000,
      loaded: this.loaded,
    };
  }

  /**
   * Revokes one token by its `jti`, kept `keepMs` (or until `tokenExpS`, the token's `exp`, plus
   * the clock tolerance, when that is sooner). Effective here before it resolves; elsewhere on
   * the message. Rejects when Redis is unreachable (nothing was revoked).
   */
  async revokeJti(jti: string, tokenExpS: number | null): Promise<RevocationResult> {
    const tokenEnd = tokenExpS === null ? 0 : tokenExpS * 1000 + this.toleranceMs;
    const [revokedAt, keptUntil] = await this.client.revokeJti(this.jtiKey, jti, this.keepMs, tokenEnd);
    const result = { revokedAt: Number(revokedAt), keptUntil: Number(keptUntil) };
    if (result.keptUntil > result.revokedAt) {
      this.denylist.addJti(jti, result.keptUntil);
      this.publish({ k: 'j', id: jti, t: result.keptUntil });
    }
    return result;
  }

  /** Revokes every token of `sub` issued up to now (Redis's clock). */
  async revokeSubject(sub: string): Promise<RevocationResult> {
    const [revokedAt, keptUntil] = await this.client.revokeSubject(this.subjectKey, sub, this.keepMs);
    const result = { revokedAt: Number(revokedAt), keptUntil: Number(keptUntil) };
    this.denylist.addSubject(sub, result.revokedAt);
    this.publish({ k: 's', id: sub, t: result.revokedAt });
    return result;
  }

  /** Reads both sets in full and adds what is missing here; false when Redis did not answer. */
  resync(): Promise<boolean> {
    this.resyncing ??= this.readAll().finally(() => (this.resyncing = null));
    return this.resyncing;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    for (const done of [...this.loadedWaiters]) done();
    this.client.disconnect();
    this.subscriber.disconnect();
    await this.resyncing;
  }

  private async readAll(): Promise<boolean> {
    try {
      const [jtis, subjects] = await Promise.all([
        this.client.zrange(this.jtiKey, 0, -1, 'WITHSCORES'),
        this.client.zrange(this.subjectKey, 0, -1, 'WITHSCORES'),
      ]);
      for (let i = 0; i + 1 < jtis.length; i += 2)
        this.denylist.addJti(jtis[i] as string, Number(jtis[i + 1]));
      for (let i = 0; i + 1 < subjects.length; i += 2)
        this.denylist.addSubject(subjects[i] as string, Number(subjects[i + 1]));
      this.denylist.prune(this.clock.wall(), this.keepMs);
      this.lastResync = this.clock.now();
      if (!this.loaded) {
        this.loaded = true;
        this.log.info(
          { jtis: this.denylist.jtis.size, subjects: this.denylist.subjects.size },
          'denylist loaded',
        );
        for (const done of [...this.loadedWaiters]) done();
      }
      return true;
    } catch (err) {
      this.log.warn(
        { err: err instanceof Error ? err.message : String(err), loaded: this.loaded },
        this.loaded
          ? 'denylist resync failed; serving the last one read'
          : `denylist not read yet; bearer tokens are ${this.failOpen ? 'accepted unchecked' : 'refused (503)'} meanwhile`,
      );
      return false;
    }
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      void this.resync().then((ok) => this.schedule(ok ? this.resyncIntervalMs : RETRY_MS));
    }, ms);
    this.timer.unref();
  }

  private async onSubscriberReady(): Promise<void> {
    try {
      await this.subscriber.subscribe(this.channel);
    } catch (err) {
      this.log.warn(
        { err: err instanceof Error ? err.message : String(err) },
        'denylist subscription failed',
      );
      return;
    }
    const resumed = this.lastResync !== null;
    this.subscribed = true;
    if (resumed) this.log.info('denylist subscription back; resyncing');
    // a read already under way may have started before the subscription: read again after it
    await this.resyncing;
    if (!(await this.resync())) this.schedule(RETRY_MS);
  }

  private publish(message: { k: 'j' | 's'; id: string; t: number }): void {
    this.client
      .publish(this.channel, JSON.stringify(message))
      .catch((err: unknown) =>
        this.log.warn(
          { err: err instanceof Error ? err.message : String(err) },
          'revocation stored but not published; other instances apply it at their next resync',
        ),
      );
  }

  /** a message from the channel; anything malformed is ignored (the resync corrects) */
  private apply(text: string): void {
    let m: unknown;
    try {
      m = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof m !== 'object' || m === null) return;
    const { k, id, t } = m as Record<string, unknown>;
    if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_LENGTH) return;
    if (typeof t !== 'number' || !Number.isFinite(t)) return;
    if (k === 'j') this.denylist.addJti(id, t);
    else if (k === 's') this.denylist.addSubject(id, t);
  }
}
