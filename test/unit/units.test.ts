import { describe, expect, it } from 'vitest';
import { MAX_DURATION_MS, isDuration, parseDuration, parseSize } from '../../src/config/units.js';

describe('parseDuration', () => {
  it.each([
    ['250ms', 250],
    ['10s', 10_000],
    ['5m', 300_000],
    ['1h', 3_600_000],
    ['1d', 86_400_000],
    ['1.5s', 1500],
    ['0.5m', 30_000],
    ['0ms', 0],
    [' 10s ', 10_000],
  ])('%j is %d ms', (input, ms) => {
    expect(parseDuration(input)).toBe(ms);
  });

  it('takes a number as milliseconds', () => {
    expect(parseDuration(1500)).toBe(1500);
    expect(parseDuration(0)).toBe(0);
  });

  it('rounds fractions of a millisecond', () => {
    expect(parseDuration('1.0004s')).toBe(1000);
    expect(parseDuration('0.0016s')).toBe(2);
  });

  it.each(['10', '', 's', '10x', '10S', '10 minutes', '-1s', '1e3ms', '1.s', '.5s', 'ms10', '10s5'])(
    'refuses %j',
    (input) => {
      expect(() => parseDuration(input)).toThrow(RangeError);
      expect(isDuration(input)).toBe(false);
    },
  );

  it('accepts up to the longest delay a Node timer honours', () => {
    expect(isDuration('24d')).toBe(true);
    expect(isDuration(`${MAX_DURATION_MS}ms`)).toBe(true);
    expect(isDuration(`${MAX_DURATION_MS + 1}ms`)).toBe(false);
    expect(isDuration('25d')).toBe(false);
  });
});

describe('parseSize', () => {
  it.each([
    ['512b', 512],
    ['64kb', 64 * 1024],
    ['10mb', 10 * 1024 * 1024],
    ['1gb', 1024 ** 3],
    ['1KB', 1024],
    ['2k', 2048],
    ['1m', 1024 ** 2],
    ['1.5kb', 1536],
    ['100', 100],
  ])('%j is %d bytes', (input, bytes) => {
    expect(parseSize(input)).toBe(bytes);
  });

  it('takes a number as bytes', () => {
    expect(parseSize(4096)).toBe(4096);
  });

  it.each(['', 'kb', '10tb', '10 megabytes', '-1kb', '1e3'])('refuses %j', (input) => {
    expect(() => parseSize(input)).toThrow(RangeError);
  });
});
