/** The access log's ring buffer: FIFO, drop-oldest when full, retries put back at the front. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RingQueue } from '../../src/observability/access-log/queue.js';

const take = (q: RingQueue<number>, n: number): { items: number[]; tries: number[] } => {
  const items: number[] = [];
  const tries: number[] = [];
  q.shift(n, items, tries);
  return { items, tries };
};

describe('RingQueue', () => {
  it('is first in, first out', () => {
    const q = new RingQueue<number>(5);
    for (const n of [1, 2, 3]) expect(q.push(n)).toBe(false);
    expect(take(q, 2).items).toEqual([1, 2]);
    q.push(4);
    expect(q.toArray()).toEqual([3, 4]);
    expect(q.length).toBe(2);
  });

  it('drops the oldest record when full and keeps the newest', () => {
    const q = new RingQueue<number>(3);
    const evicted = [1, 2, 3, 4, 5].map((n) => q.push(n));
    expect(evicted).toEqual([false, false, false, true, true]);
    expect(q.toArray()).toEqual([3, 4, 5]);
  });

  it('puts records back at the front with their retry count, and refuses when full', () => {
    const q = new RingQueue<number>(4);
    q.push(10);
    q.push(11);
    const { items } = take(q, 2);
    q.push(12);
    // put back newest first, as the shipper does, so the batch keeps its order
    expect(q.unshift(items[1] ?? -1, 2)).toBe(true);
    expect(q.unshift(items[0] ?? -1, 1)).toBe(true);
    expect(q.toArray()).toEqual([10, 11, 12]);
    q.push(13);
    expect(q.unshift(9, 0)).toBe(false);
    expect(q.toArray()).toEqual([10, 11, 12, 13]);
    expect(take(q, 4).tries).toEqual([1, 2, 0, 0]);
  });

  it('saturates retry counts at 255 and resets them when a slot is reused', () => {
    const q = new RingQueue<number>(2);
    q.unshift(1, 1000);
    q.push(2);
    q.push(3); // overwrites 1
    expect(take(q, 2).tries).toEqual([0, 0]);
    q.unshift(4, 1000);
    expect(take(q, 1).tries).toEqual([255]);
  });

  it('grows past its first allocation, across the wrap-around, up to the capacity', () => {
    const q = new RingQueue<number>(3000);
    for (let i = 0; i < 1000; i++) q.push(i);
    take(q, 600);
    for (let i = 1000; i < 4000; i++) q.push(i);
    expect(q.length).toBe(3000);
    expect(q.toArray()).toEqual(Array.from({ length: 3000 }, (_, i) => i + 1000));
  });

  it('rejects a capacity below 1', () => {
    expect(() => new RingQueue(0)).toThrow(RangeError);
  });

  it('behaves like an array model under random operations', () => {
    type Op =
      { op: 'push'; n: number } | { op: 'shift'; n: number } | { op: 'unshift'; n: number } | { op: 'clear' };
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 5, arbitrary: fc.integer({ min: 0, max: 1e6 }).map((n) => ({ op: 'push' as const, n })) },
      { weight: 2, arbitrary: fc.integer({ min: 0, max: 7 }).map((n) => ({ op: 'shift' as const, n })) },
      { weight: 2, arbitrary: fc.integer({ min: 0, max: 1e6 }).map((n) => ({ op: 'unshift' as const, n })) },
      { weight: 1, arbitrary: fc.constant({ op: 'clear' as const }) },
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 12 }), fc.array(op, { maxLength: 200 }), (capacity, ops) => {
        const q = new RingQueue<number>(capacity);
        let model: number[] = [];
        for (const o of ops) {
          if (o.op === 'push') {
            const full = model.length === capacity;
            expect(q.push(o.n)).toBe(full);
            model.push(o.n);
            if (full) model.shift();
          } else if (o.op === 'shift') {
            expect(take(q, o.n).items).toEqual(model.splice(0, o.n));
          } else if (o.op === 'unshift') {
            const fits = model.length < capacity;
            expect(q.unshift(o.n, 0)).toBe(fits);
            if (fits) model.unshift(o.n);
          } else {
            expect(q.clear()).toBe(model.length);
            model = [];
          }
          expect(q.length).toBe(model.length);
          expect(q.toArray()).toEqual(model);
        }
      }),
    );
  });
});
