/** Durations and sizes as users write them in the config file. */

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

/** "512b" | "64kb" | "10mb" | "1gb" | bytes as a number → bytes (binary multiples). */
export function parseSize(value: string | number): number {
  if (typeof value === 'number') return value;
  const m = sizeRe.exec(value);
  if (!m) throw new RangeError(`invalid size "${value}" (use 512b, 64kb, 10mb, 1gb)`);
  const unit = (m[2] ?? '').toLowerCase() || 'b';
  return Math.round(Number.parseFloat(value) * (SIZE_UNITS[unit] ?? 1));
}
