/**
 * Verified tokens, so a repeated token does not pay a signature check again: a bounded LRU keyed
 * by the SHA-256 of the token (the raw token is never kept), each entry until the token's `exp`
 * and at most `maxTtlMs`.
 */
import { createHash } from 'node:crypto';
import type { Consumer } from '../types.js';

type Entry = { readonly consumer: Consumer; readonly until: number };

export class TokenCache {
  private readonly entries = new Map<string, Entry>();

  constructor(
    readonly maxEntries: number,
    readonly maxTtlMs: number,
  ) {}

  static key(token: string): string {
    return createHash('sha256').update(token).digest('base64url');
  }

  get(key: string, now: number): Consumer | null {
    const entry = this.entries.get(key);
    if (entry === undefined) return null;
    this.entries.delete(key);
    if (entry.until <= now) return null;
    this.entries.set(key, entry); // most recently used last
    return entry.consumer;
  }

  /** `expMs`: the token's `exp` in ms, or null when it has none */
  set(key: string, consumer: Consumer, expMs: number | null, now: number): void {
    if (this.maxEntries === 0) return;
    const until = Math.min(expMs ?? Infinity, now + this.maxTtlMs);
    if (until <= now) return;
    this.entries.delete(key);
    this.entries.set(key, { consumer, until });
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
