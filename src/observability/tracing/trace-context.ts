/**
 * W3C Trace Context (level 1) on the hot path: parse and format `traceparent`, decide what of
 * `tracestate` is forwarded, and draw trace and span ids. Runs on every request, so there is no
 * regex and no crypto call per id: ids are cut from a pooled buffer of random bytes that is
 * refilled (one `randomFillSync`) only when used up.
 */
import { randomFillSync } from 'node:crypto';

export type Traceparent = {
  /** 32 lower-case hex characters, not all zero */
  traceId: string;
  /** the caller's span: 16 lower-case hex characters, not all zero */
  parentId: string;
  /** the trace-flags byte; bit 0 is `sampled` */
  flags: number;
};

export const SAMPLED_FLAG = 0x01;
/** Longer `tracestate` values are dropped rather than forwarded (the spec's suggested limit). */
export const MAX_TRACESTATE_LENGTH = 512;

const TRACEPARENT_LENGTH = 55;
const DASH = 0x2d;

/** -1 for anything but `0-9 a-f`: upper-case hex is invalid in traceparent. */
function hexValue(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x61 && code <= 0x66) return code - 0x61 + 10;
  return -1;
}

/** True when [start, end) is lower-case hex and not all zeros. */
function isNonZeroHex(value: string, start: number, end: number): boolean {
  let nonZero = false;
  for (let i = start; i < end; i++) {
    const v = hexValue(value.charCodeAt(i));
    if (v < 0) return false;
    if (v !== 0) nonZero = true;
  }
  return nonZero;
}

/**
 * The caller's trace, or null when the header is absent or invalid (then a new trace starts).
 * Version `00` must be exactly 55 characters. A later version (anything but the forbidden `ff`)
 * is read by the version-00 layout when it is at least that long and, if longer, has a `-`
 * right after the flags, as the spec asks of a vendor meeting a version it does not know.
 */
export function parseTraceparent(value: string | undefined): Traceparent | null {
  if (value === undefined || value.length < TRACEPARENT_LENGTH) return null;
  const v0 = hexValue(value.charCodeAt(0));
  const v1 = hexValue(value.charCodeAt(1));
  if (v0 < 0 || v1 < 0 || (v0 === 15 && v1 === 15)) return null;
  if (v0 === 0 && v1 === 0) {
    if (value.length !== TRACEPARENT_LENGTH) return null;
  } else if (value.length > TRACEPARENT_LENGTH && value.charCodeAt(TRACEPARENT_LENGTH) !== DASH) {
    return null;
  }
  if (value.charCodeAt(2) !== DASH || value.charCodeAt(35) !== DASH || value.charCodeAt(52) !== DASH) {
    return null;
  }
  if (!isNonZeroHex(value, 3, 35) || !isNonZeroHex(value, 36, 52)) return null;
  const f0 = hexValue(value.charCodeAt(53));
  const f1 = hexValue(value.charCodeAt(54));
  if (f0 < 0 || f1 < 0) return null;
  return { traceId: value.slice(3, 35), parentId: value.slice(36, 52), flags: f0 * 16 + f1 };
}

/** Always version 00, whatever version came in: a vendor writes the version it knows. */
export function formatTraceparent(traceId: string, spanId: string, sampled: boolean): string {
  return `00-${traceId}-${spanId}-${sampled ? '01' : '00'}`;
}

/**
 * The `tracestate` to send upstream: the caller's value unchanged, but only alongside a valid
 * `traceparent` (the spec ties the two together) and only when at most 512 characters; an
 * empty value is not worth a header. The gateway adds no entry of its own.
 */
export function forwardableTracestate(tracestate: string | undefined, parentValid: boolean): string | null {
  if (!parentValid || tracestate === undefined || tracestate.length === 0) return null;
  return tracestate.length <= MAX_TRACESTATE_LENGTH ? tracestate : null;
}

const POOL_SIZE = 4096;
// allocUnsafeSlow: a buffer of our own, not a slice of node's shared pool.
const pool = Buffer.allocUnsafeSlow(POOL_SIZE);
let poolOffset = POOL_SIZE;

function randomHex(bytes: number): string {
  for (;;) {
    if (poolOffset + bytes > POOL_SIZE) {
      randomFillSync(pool);
      poolOffset = 0;
    }
    const start = poolOffset;
    poolOffset += bytes;
    // An all-zero id is invalid; with 64 random bits this redraw is theoretical, but cheap.
    for (let i = start; i < poolOffset; i++) {
      if (pool[i] !== 0) return pool.toString('hex', start, poolOffset);
    }
  }
}

/** 16 random bytes as 32 lower-case hex characters, never all zero. */
export const newTraceId = (): string => randomHex(16);

/** 8 random bytes as 16 lower-case hex characters, never all zero. */
export const newSpanId = (): string => randomHex(8);
