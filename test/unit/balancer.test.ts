import { describe, expect, it } from 'vitest';
import { createBalancer } from '../../src/upstream/balancer.js';

type T = { name: string; inflight: number };
const targets = (...names: string[]): T[] => names.map((name) => ({ name, inflight: 0 }));
/** a deterministic "random" source cycling through the given values */
const sequence = (...values: number[]) => {
  let i = 0;
  return () => values[i++ % values.length] as number;
};

describe('round-robin', () => {
  it('takes each target in turn', () => {
    const b = createBalancer('round-robin');
    const ts = targets('a', 'b', 'c');
    expect(Array.from({ length: 7 }, () => b.pick(ts, null).name)).toEqual([
      'a',
      'b',
      'c',
      'a',
      'b',
      'c',
      'a',
    ]);
  });
  it('skips tried targets, and repeats only when all were tried', () => {
    const b = createBalancer('round-robin');
    const ts = targets('a', 'b', 'c');
    const [a, b2] = ts as [T, T, T];
    expect(b.pick(ts, [a]).name).toBe('b');
    expect(b.pick(ts, [a, b2]).name).toBe('c');
    expect(['a', 'b', 'c']).toContain(b.pick(ts, ts).name);
  });
  it('copes with a list that shrank', () => {
    const b = createBalancer('round-robin');
    b.pick(targets('a', 'b', 'c'), null);
    b.pick(targets('a', 'b', 'c'), null);
    expect(b.pick(targets('x'), null).name).toBe('x');
  });
});

describe('random', () => {
  it('picks by the random source and avoids tried targets', () => {
    const ts = targets('a', 'b', 'c');
    expect(createBalancer('random', () => 0.5).pick(ts, null).name).toBe('b');
    expect(createBalancer('random', () => 0.5).pick(ts, [ts[1] as T]).name).toBe('c');
  });
  it('spreads over all targets', () => {
    const b = createBalancer('random');
    const ts = targets('a', 'b', 'c', 'd');
    const seen = new Map<string, number>();
    for (let i = 0; i < 4000; i++) {
      const n = b.pick(ts, null).name;
      seen.set(n, (seen.get(n) ?? 0) + 1);
    }
    expect(seen.size).toBe(4);
    for (const count of seen.values()) expect(count).toBeGreaterThan(800);
  });
});

describe('least-request (power of two choices)', () => {
  it('takes the less busy of the two sampled targets', () => {
    const ts = targets('a', 'b', 'c');
    (ts[0] as T).inflight = 5;
    (ts[2] as T).inflight = 1;
    // samples index 0 (a) and then index 1 of the remaining two → c
    expect(createBalancer('least-request', sequence(0, 0.9)).pick(ts, null).name).toBe('c');
    // samples a and b → b (0 in flight)
    expect(createBalancer('least-request', sequence(0, 0)).pick(ts, null).name).toBe('b');
  });
  it('never samples the same target twice', () => {
    const ts = targets('a', 'b');
    (ts[1] as T).inflight = 3;
    const b = createBalancer('least-request', sequence(0.99, 0.99));
    expect(b.pick(ts, null).name).toBe('a');
  });
  it('excludes tried targets while others remain', () => {
    const ts = targets('a', 'b', 'c');
    const b = createBalancer('least-request');
    for (let i = 0; i < 50; i++) expect(b.pick(ts, [ts[0] as T, ts[1] as T]).name).toBe('c');
  });
  it('sends most traffic away from a loaded target', () => {
    const ts = targets('a', 'b', 'c');
    (ts[0] as T).inflight = 10;
    const b = createBalancer('least-request');
    let toA = 0;
    for (let i = 0; i < 3000; i++) if (b.pick(ts, null).name === 'a') toA++;
    expect(toA).toBe(0); // a is only ever sampled with a less busy partner
  });
});
