/**
 * The API key authenticator's in-process cache: known keys (their records) and unknown ids in
 * two separately bounded maps, so a flood of made-up ids never pushes a real key out (cached
 * records are what keeps keys working while the database is down). Instants are monotonic
 * (the authenticator's clock), never the wall clock.
 */
import type { ApiKeyRecord } from '../../stores/database.js';
import type { Consumer } from '../types.js';

export type CachedKey = {
  readonly record: ApiKeyRecord;
  readonly consumer: Consumer;
  /** monotonic ms when the read that found it was sent */
  readonly readAt: number;
  /** the database's clock at that read (ms since the epoch): expiry and grace are compared in it */
  readonly dbTime: number;
  /** false once notifications may have been missed: re-read before use, kept as a fallback */
  fresh: boolean;
};

export function cachedKey(record: ApiKeyRecord, readAt: number, dbTime: number): CachedKey {
  return {
    record,
    consumer: Object.freeze({ id: record.id, tier: record.tier, roles: Object.freeze([...record.roles]) }),
    readAt,
    dbTime,
    fresh: true,
  };
}

/** The database's clock now, estimated from the read and the monotonic time elapsed since. */
export function dbNow(entry: CachedKey, now: number): number {
  // readAt is when the read was sent, before the database took its time: never late
  return entry.dbTime + (now - entry.readAt);
}

export class KeyCache {
  private readonly known = new Map<string, CachedKey>();
  /** unknown id → monotonic ms of the read that did not find it */
  private readonly unknown = new Map<string, number>();

  constructor(
    private readonly maxKnown: number,
    private readonly maxUnknown: number,
  ) {}

  get(id: string): CachedKey | undefined {
    return this.known.get(id);
  }

  /** when a read last found no such id (undefined: not known to be unknown) */
  unknownSince(id: string): number | undefined {
    return this.unknown.get(id);
  }

  setKnown(id: string, entry: CachedKey): void {
    this.unknown.delete(id);
    put(this.known, id, entry, this.maxKnown);
  }

  setUnknown(id: string, readAt: number): void {
    this.known.delete(id);
    put(this.unknown, id, readAt, this.maxUnknown);
  }

  drop(id: string): void {
    this.known.delete(id);
    this.unknown.delete(id);
  }

  /** every record must be re-read before it is trusted again (kept for the database-down fallback) */
  suspectAll(): void {
    for (const entry of this.known.values()) entry.fresh = false;
  }

  get sizes(): { known: number; unknown: number } {
    return { known: this.known.size, unknown: this.unknown.size };
  }
}

/** Inserts as the newest entry; the oldest goes when the map is full. */
function put<V>(map: Map<string, V>, id: string, value: V, max: number): void {
  map.delete(id);
  if (map.size >= max) {
    const oldest = map.keys().next();
    if (!oldest.done) map.delete(oldest.value);
  }
  map.set(id, value);
}
