/**
 * A bounded FIFO ring for records waiting to be shipped, with a retry count per slot kept in a
 * parallel byte array so that queueing a record allocates nothing. When full, pushing overwrites
 * the oldest record (the caller counts it as dropped). Records whose send failed go back at the
 * front: they are older than anything queued since, so order is kept.
 */

const INITIAL_SLOTS = 1024;

export class RingQueue<T> {
  private items: Array<T | undefined>;
  private tries: Uint8Array;
  private head = 0;
  private size = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError('capacity must be an integer >= 1');
    // grown on demand: a large maxBuffer costs memory only while Elasticsearch is away
    const slots = Math.min(capacity, INITIAL_SLOTS);
    this.items = new Array<T | undefined>(slots).fill(undefined);
    this.tries = new Uint8Array(slots);
  }

  get length(): number {
    return this.size;
  }

  /** Adds at the back. Returns true when the queue was full and the oldest record was overwritten. */
  push(item: T): boolean {
    if (this.size === this.capacity) {
      this.items[this.head] = item;
      this.tries[this.head] = 0;
      this.head = this.wrap(this.head + 1);
      return true;
    }
    if (this.size === this.items.length) this.grow();
    const i = this.wrap(this.head + this.size);
    this.items[i] = item;
    this.tries[i] = 0;
    this.size++;
    return false;
  }

  /** Moves up to `n` of the oldest records (and their retry counts) into `out` and `outTries`. */
  shift(n: number, out: T[], outTries: number[]): number {
    const count = Math.min(n, this.size);
    for (let k = 0; k < count; k++) {
      out.push(this.items[this.head] as T);
      outTries.push(this.tries[this.head] ?? 0);
      this.items[this.head] = undefined;
      this.head = this.wrap(this.head + 1);
    }
    this.size -= count;
    return count;
  }

  /**
   * Puts a record back at the front with its retry count (saturating at 255). Returns false, and
   * changes nothing, when the queue is full: the record is then the oldest, the one to drop.
   */
  unshift(item: T, tries: number): boolean {
    if (this.size === this.capacity) return false;
    if (this.size === this.items.length) this.grow();
    this.head = this.wrap(this.head - 1 + this.items.length);
    this.items[this.head] = item;
    this.tries[this.head] = Math.min(tries, 255);
    this.size++;
    return true;
  }

  /** Empties the queue; returns how many records it held. */
  clear(): number {
    const count = this.size;
    this.items.fill(undefined);
    this.head = 0;
    this.size = 0;
    return count;
  }

  /** The queued records, oldest first (tests and debugging). */
  toArray(): T[] {
    const out: T[] = [];
    for (let k = 0; k < this.size; k++) out.push(this.items[this.wrap(this.head + k)] as T);
    return out;
  }

  private wrap(i: number): number {
    const slots = this.items.length;
    return i >= slots ? i - slots : i;
  }

  private grow(): void {
    const slots = Math.min(this.capacity, this.items.length * 2);
    const items = new Array<T | undefined>(slots).fill(undefined);
    const tries = new Uint8Array(slots);
    for (let k = 0; k < this.size; k++) {
      const i = this.wrap(this.head + k);
      items[k] = this.items[i];
      tries[k] = this.tries[i] ?? 0;
    }
    this.items = items;
    this.tries = tries;
    this.head = 0;
  }
}
