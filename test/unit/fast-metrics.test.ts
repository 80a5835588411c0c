import { Counter, Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { FastCounter, FastHistogram } from '../../src/observability/fast-metrics.js';

/** The same observations through prom-client and through the fast metrics give the same text. */
describe('fast metrics', () => {
  it('expose histograms exactly as prom-client does', async () => {
    const buckets = [0.005, 0.01, 0.1, 1, 10];
    const ref = new Registry();
    const fast = new Registry();
    const h = new Histogram({
      name: 'h_seconds',
      help: 'help',
      labelNames: ['a', 'b'],
      buckets,
      registers: [ref],
    });
    const f = new FastHistogram('h_seconds', 'help', ['a', 'b'], buckets, fast);
    const values = [0, 0.005, 0.0051, 0.05, 0.1, 0.99, 1, 5, 10, 11, 1e6];
    for (const v of values) {
      h.labels('x', 'y').observe(v);
      f.labels('x', 'y').observe(v);
    }
    h.labels('x', 'z').observe(0.2);
    f.labels('x', 'z').observe(0.2);
    expect(await fast.metrics()).toBe(await ref.metrics());
  });

  it('expose counters exactly as prom-client does, and bind a child once', async () => {
    const ref = new Registry();
    const fast = new Registry();
    const c = new Counter({
      name: 'c_total',
      help: 'help "quoted"',
      labelNames: ['route'],
      registers: [ref],
    });
    const f = new FastCounter('c_total', 'help "quoted"', ['route'], fast);
    c.labels('r1').inc();
    c.labels('r1').inc(2);
    c.labels('we"ird\\').inc();
    f.labels('r1').inc();
    f.labels('r1').inc(2);
    f.labels('we"ird\\').inc();
    expect(f.labels('r1')).toBe(f.labels('r1'));
    expect(await fast.metrics()).toBe(await ref.metrics());
  });

  it('refuses a wrong number of label values', () => {
    const f = new FastCounter('x_total', 'x', ['a', 'b'], new Registry());
    expect(() => f.labels('only-one')).toThrow(/expected 2 label values/);
  });
});
