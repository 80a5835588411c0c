/**
 * Keys from a JWKS endpoint (`auth.jwt.jwksUrl`):
 * - fetched at startup (bounded) and refreshed in the background every `refreshMs`, or per the
 *   response's `Cache-Control: max-age` (clamped to [minRefreshMs, maxRefreshMs]);
 * - an unknown `kid` triggers one refetch at most every `cooldownMs`, and requests arriving while
 *   a fetch is in flight wait for that one: a flood of unknown kids costs one fetch per cooldown;
 * - the last good key set is kept while the endpoint is down or answers garbage;
 * - until a key set was loaded once, lookups say `unavailable` (503), not "invalid" (401); they
 *   wait for a pending fetch at most `firstLoadWaitMs` (counted from the fetch's start), then
 *   answer at once instead of holding every request for the whole fetch timeout;
 * - a refresh that removes keys bumps `generation` (see keys.ts) and tells the listeners.
 * Durations (cooldown) use the monotonic clock; timers are monotonic in Node.
 * Only the configured URL is ever fetched: `jku`, `x5u`, `jwk` and `x5c` in a token's header are
 * never looked at (jose's local key set matches on `alg` and `kid` only).
 */
import { createLocalJWKSet, type JSONWebKeySet, type JWSHeaderParameters } from 'jose';
import type { Logger } from '../../observability/logger.js';
import { systemClock, type Clock } from '../../clock.js';
import { MAX_CANDIDATES, type KeyLookup, type KeySource, type VerifyKey } from './keys.js';

export type JwksTuning = {
  /** background refresh period without Cache-Control */
  readonly refreshMs: number;
  readonly minRefreshMs: number;
  readonly maxRefreshMs: number;
  /** at most one unknown-kid refetch per cooldown */
  readonly cooldownMs: number;
  /** first retry after a failed fetch; doubles up to maxRetryMs */
  readonly retryMs: number;
  readonly maxRetryMs: number;
  /** one fetch, connect to last byte */
  readonly timeoutMs: number;
  /** how long ready() waits for the first key set */
  readonly readyTimeoutMs: number;
  /**
   * while no key set was ever loaded: how long a request may wait for a pending fetch, counted
   * from the fetch's start; later requests are answered (503) at once
   */
  readonly firstLoadWaitMs: number;
  readonly maxBytes: number;
};

export const DEFAULT_JWKS_TUNING: JwksTuning = {
  refreshMs: 5 * 60_000,
  minRefreshMs: 30_000,
  maxRefreshMs: 60 * 60_000,
  cooldownMs: 30_000,
  retryMs: 2_000,
  maxRetryMs: 60_000,
  timeoutMs: 5_000,
  readyTimeoutMs: 5_000,
  firstLoadWaitMs: 500,
  maxBytes: 1024 * 1024,
};

type LocalSet = ReturnType<typeof createLocalJWKSet>;

export class JwksKeySource implements KeySource {
  private local: LocalSet | null = null;
  private fingerprints = new Set<string>();
  private inflight: Promise<boolean> | null = null;
  /** before the first load: the pending fetch, or `firstLoadWaitMs` after it started */
  private firstLoadWait: Promise<unknown> = Promise.resolve();
  private lastKidRefetch = -Infinity;
  private nextRefreshMs: number;
  private retryDelay: number;
  private timer: NodeJS.Timeout | null = null;
  private abort: AbortController | null = null;
  private started = false;
  private closed = false;
  private readonly removedListeners: Array<() => void> = [];
  /** fetches attempted (for tests and diagnostics) */
  fetches = 0;
  generation = 0;
  /** a URL safe to log (no credentials, no query) */
  private readonly where: string;

  constructor(
    private readonly url: string,
    private readonly logger: Logger,
    private readonly tuning: JwksTuning = DEFAULT_JWKS_TUNING,
    private readonly clock: Clock = systemClock,
  ) {
    this.nextRefreshMs = tuning.refreshMs;
    this.retryDelay = tuning.retryMs;
    const u = new URL(url);
    this.where = `${u.origin}${u.pathname}`;
  }

  get loaded(): boolean {
    return this.local !== null;
  }

  async ready(): Promise<void> {
    if (!this.started) {
      this.started = true;
      const first = this.refresh().then((ok) => {
        this.schedule(ok);
        return ok;
      });
      let timeout: NodeJS.Timeout | undefined;
      const bounded = new Promise<boolean>((resolve) => {
        timeout = setTimeout(() => resolve(false), this.tuning.readyTimeoutMs);
      });
      const ok = await Promise.race([first, bounded]);
      clearTimeout(timeout);
      if (!ok && !this.loaded) {
        this.logger.warn(
          { jwks: this.where },
          'auth.jwt: no key set loaded yet; bearer tokens get 503 until the JWKS endpoint answers (retrying in the background)',
        );
      }
    }
  }

  onKeysRemoved(listener: () => void): void {
    this.removedListeners.push(listener);
  }

  close(): void {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.abort?.abort();
  }

  async lookup(header: JWSHeaderParameters): Promise<KeyLookup> {
    if (this.local === null) {
      // never loaded: one attempt per cooldown on the request path, the rest is the background's;
      // a pending fetch is waited for briefly, not for its whole timeout
      if (this.inflight === null && this.kidRefetchAllowed()) void this.refresh();
      await this.firstLoadWait;
      if (this.local === null) return { kind: 'unavailable' };
    }
    const found = await candidates(this.local, header);
    if (found.length > 0) return { kind: 'keys', keys: found };
    // an unknown kid: perhaps a rotation
    if (this.inflight === null && !this.kidRefetchAllowed()) return { kind: 'none' };
    await this.refresh();
    const again = await candidates(this.local, header);
    return again.length > 0 ? { kind: 'keys', keys: again } : { kind: 'none' };
  }

  private kidRefetchAllowed(): boolean {
    const now = this.clock.now();
    if (now - this.lastKidRefetch < this.tuning.cooldownMs) return false;
    this.lastKidRefetch = now;
    return true;
  }

  /** one fetch at a time; true when a key set was loaded */
  refresh(): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    if (this.inflight === null) {
      const fetching = this.fetchOnce().finally(() => (this.inflight = null));
      this.inflight = fetching;
      if (this.local === null) this.firstLoadWait = settledOrAfter(fetching, this.tuning.firstLoadWaitMs);
    }
    return this.inflight;
  }

  private schedule(ok: boolean): void {
    if (this.closed) return;
    let delay: number;
    if (ok) {
      delay = this.nextRefreshMs;
      this.retryDelay = this.tuning.retryMs;
    } else {
      delay = this.retryDelay;
      this.retryDelay = Math.min(this.retryDelay * 2, this.tuning.maxRetryMs);
    }
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.refresh().then((result) => this.schedule(result));
    }, delay);
    this.timer.unref();
  }

  private async fetchOnce(): Promise<boolean> {
    this.fetches++;
    const abort = new AbortController();
    this.abort = abort;
    const timeout = setTimeout(() => abort.abort(), this.tuning.timeoutMs);
    try {
      const res = await fetch(this.url, {
        signal: abort.signal,
        headers: { accept: 'application/jwk-set+json, application/json' },
      });
      if (res.status !== 200) {
        await res.body?.cancel();
        throw new Error(`HTTP ${res.status}`);
      }
      const length = Number(res.headers.get('content-length') ?? '0');
      if (length > this.tuning.maxBytes) {
        await res.body?.cancel();
        throw new Error('response too large');
      }
      const text = await res.text();
      if (text.length > this.tuning.maxBytes) throw new Error('response too large');
      const jwks = usableKeys(JSON.parse(text));
      const local = createLocalJWKSet(jwks); // throws on a malformed set
      if (this.closed) return false;
      this.install(local, jwks);
      this.nextRefreshMs = this.refreshFrom(res.headers.get('cache-control'));
      return true;
    } catch (err) {
      if (!this.closed) {
        this.logger.warn(
          {
            jwks: this.where,
            err: (err as Error).name === 'AbortError' ? 'timeout' : (err as Error).message,
          },
          this.local === null
            ? 'auth.jwt: cannot fetch the JWKS'
            : 'auth.jwt: cannot refresh the JWKS; keeping the last good keys',
        );
      }
      return false;
    } finally {
      clearTimeout(timeout);
      if (this.abort === abort) this.abort = null;
    }
  }

  private install(local: LocalSet, jwks: JSONWebKeySet): void {
    const next = new Set(jwks.keys.map((k) => JSON.stringify([k.kid, k.kty, k.crv, k.n, k.e, k.x, k.y])));
    const removed = [...this.fingerprints].some((f) => !next.has(f));
    this.local = local;
    this.fingerprints = next;
    if (removed) {
      this.generation++;
      for (const l of this.removedListeners) l();
    }
  }

  private refreshFrom(cacheControl: string | null): number {
    const m = cacheControl === null ? null : /(?:^|[,\s])max-age=(\d+)/i.exec(cacheControl);
    if (m === null) return this.tuning.refreshMs;
    const ms = Number(m[1]) * 1000;
    return Math.min(Math.max(ms, this.tuning.minRefreshMs), this.tuning.maxRefreshMs);
  }
}

/** resolves when `p` settles or after `ms`, whichever comes first (the timer does not hold the process) */
function settledOrAfter(p: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    timer.unref();
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    p.then(done, done);
  });
}

/**
 * The signature keys of a JWKS document: public RSA, EC and OKP keys. A document with none (not
 * a key set, an empty set, only private or symmetric keys) is refused: the last good set stays.
 */
function usableKeys(doc: unknown): JSONWebKeySet {
  const keys = (doc as { keys?: unknown } | null)?.keys;
  if (!Array.isArray(keys)) throw new Error('not a JWK set');
  const usable = keys.filter(
    (k): k is JSONWebKeySet['keys'][number] =>
      typeof k === 'object' &&
      k !== null &&
      ['RSA', 'EC', 'OKP'].includes((k as { kty?: unknown }).kty as string) &&
      (k as { d?: unknown }).d === undefined &&
      ((k as { use?: unknown }).use === undefined || (k as { use?: unknown }).use === 'sig'),
  );
  if (usable.length === 0) throw new Error('the JWK set has no usable public signature key');
  return { keys: usable };
}

/** the keys of the set that may verify a token with this header (by `alg` and `kid`) */
async function candidates(local: LocalSet, header: JWSHeaderParameters): Promise<VerifyKey[]> {
  const { alg, kid } = header;
  if (alg === undefined) return [];
  try {
    return [await local({ alg, ...(kid === undefined ? {} : { kid }) })];
  } catch (err) {
    if ((err as { code?: string }).code !== 'ERR_JWKS_MULTIPLE_MATCHING_KEYS') return [];
    const keys: VerifyKey[] = [];
    for await (const key of err as AsyncIterable<VerifyKey>) {
      keys.push(key);
      if (keys.length >= MAX_CANDIDATES) break;
    }
    return keys;
  }
}
