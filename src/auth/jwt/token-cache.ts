/**
 * Verified tokens, so a repeated token does not pay a signature check again: a bounded (nearly) LRU keyed
 * by the SHA-256 of the token (the raw token is never kept). An entry ends at the first of:
 * - `notAfter`, a wall-clock time the token states (its `exp`; `iat + maxTokenAge`), compared
 *   with the wall clock as the token means it;
 * - `maxTtlMs` after it was stored, measured on the monotonic clock: a wall-clock step backwards
 *   cannot keep an entry (perhaps of a withdrawn key) for longer.
 */
import { createHash } from 'node:crypto';
import type { AuthAttempt, Consumer } from '../types.js';

/** What a verified token left in the cache: its consumer, and what revocation looks at. */
export type CachedToken = {
  readonly consumer: Consumer;
  /** the answer for this token, made once (a cache hit allocates nothing) */
  readonly ok: AuthAttempt;
  /** its `jti` (null: none, or not a string) */
  readonly jti: string | null;
  /** its `iat` in seconds (null: none) */
  readonly iat: number | null;
};

type Entry = CachedToken & {
  /** `moves` when it was last put at the end */
  movedAt: number;
  /** wall-clock ms; Infinity when the token states no end */
  readonly notAfter: number;
  /** monotonic ms */
  readonly staleAt: number;
};

export class TokenCache {
  private readonly entries = new Map<string, Entry>();
  /** entries put at the end so far (stored or moved) */
  private moves = 0;
  private readonly moveAfter: number;

  constructor(
    readonly maxEntries: number,
    readonly maxTtlMs: number,
  ) {
    this.moveAfter = Math.max(1, Math.floor(maxEntries / 2));
  }

  static key(token: string): string {
    return createHash('sha256').update(token).digest('base64url');
  }

  /** `wallNow`: Date.now(); `monoNow`: performance.now() (or the injected clocks) */
  get(key: string, wallNow: number, monoNow: number): Consumer | null {
    return this.entry(key, wallNow, monoNow)?.consumer ?? null;
  }

  /** the cached token under `key`, as `get` finds it */
  entry(key: string, wallNow: number, monoNow: number): CachedToken | null {
    const entry = this.entries.get(key);
    if (entry === undefined) return null;
    if (entry.notAfter <= wallNow || entry.staleAt <= monoNow) {
      this.entries.delete(key);
      return null;
    }
    // Most recently used last, but moved only once at least half the bound's worth of entries
    // went in after it: a hot token is not deleted and re-added (two hash operations, and a
    // table that fills with deleted slots) on every request, and an entry is still never
    // evicted sooner than half the bound's insertions after its last use.
    if (this.moves - entry.movedAt >= this.moveAfter) {
      this.entries.delete(key);
      entry.movedAt = ++this.moves;
      this.entries.set(key, entry);
    }
    return entry;
  }

  /** `notAfterMs`: the wall-clock time (ms) the token stops being valid, or null when it has none */
  set(
    key: string,
    consumer: Consumer,
    notAfterMs: number | null,
    wallNow: number,
    monoNow: number,
    jti: string | null = null,
    iat: number | null = null,
  ): void {
    if (this.maxEntries === 0 || this.maxTtlMs <= 0) return;
    const notAfter = notAfterMs ?? Infinity;
    if (notAfter <= wallNow) return;
    this.entries.delete(key);
    const ok: AuthAttempt = Object.freeze({ kind: 'ok', consumer });
    this.entries.set(key, {
      consumer,
      ok,
      jti,
      iat,
      notAfter,
      staleAt: monoNow + this.maxTtlMs,
      movedAt: ++this.moves,
    });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done === true) break;
      this.entries.delete(oldest.value);
    }
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
