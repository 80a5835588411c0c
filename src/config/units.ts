/**
 * Durations and sizes as users write them in the config file.
 *
 * - Durations: a number with a unit, `ms`, `s`, `m` (minutes), `h` or `d` (lower case, an
 *   optional fraction: `1.5s`), or a plain number of milliseconds. Results are rounded to whole
 *   milliseconds and may not exceed MAX_DURATION_MS (~24.8 days): Node's timers silently turn a
 *   longer delay into 1 ms, so `timeouts.response: 30d` would otherwise time out at once.
 * - Sizes: a number with `b`, `kb`, `mb`, `gb` (or `k`, `m`, `g`; any case), binary multiples
 *   (`1kb` = 1024 bytes), or a plain number of bytes. A string without a unit is bytes.
 */

const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};
const SIZE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1024,
  k: 1024,
  mb: 1024 ** 2,
  m: 1024 ** 2,
  gb: 1024 ** 3,
  g: 1024 ** 3,
};

/** The longest delay a Node timer honours (2^31 - 1 ms). */
export const MAX_DURATION_MS = 2 ** 31 - 1;

export const DURATION_PATTERN = '^\\s*\\d+(\\.\\d+)?\\s*(ms|s|m|h|d)\\s*$';
export const SIZE_PATTERN = '^\\s*\\d+(\\.\\d+)?\\s*([kKmMgG]?[bB]?)\\s*$';

const durationRe = new RegExp(DURATION_PATTERN);
const sizeRe = new RegExp(SIZE_PATTERN);

/** "250ms" | "10s" | "5m" | "1h" | "1d" | milliseconds as a number → milliseconds. */
export function parseDuration(value: string | number): number {
  if (typeof value === 'number') return value;
  const m = durationRe.exec(value);
  if (!m) throw new RangeError(`invalid duration "${value}" (use 250ms, 10s, 5m, 1h, 1d)`);
  return Math.round(Number.parseFloat(value) * (DURATION_UNITS[m[2] ?? 'ms'] ?? 1));
}

/** True when `value` is a duration string (see DURATION_PATTERN) of at most MAX_DURATION_MS. */
export function isDuration(value: string): boolean {
  return durationRe.test(value) && parseDuration(value) <= MAX_DURATION_MS;
}

/** "512b" | "64kb" | "10mb" | "1gb" | bytes as a number → bytes (binary multiples). */
export function parseSize(value: string | number): number {
  if (typeof value === 'number') return value;
  const m = sizeRe.exec(value);
  if (!m) throw new RangeError(`invalid size "${value}" (use 512b, 64kb, 10mb, 1gb)`);
  const unit = (m[2] ?? '').toLowerCase() || 'b';
  return Math.round(Number.parseFloat(value) * (SIZE_UNITS[unit] ?? 1));
}
