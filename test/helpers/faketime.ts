/** libfaketime (Debian package `faketime`): run a child process with its wall clock shifted. */
import { existsSync } from 'node:fs';
import { arch } from 'node:os';

const CANDIDATES = [
  `/usr/lib/${arch() === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu/faketime/libfaketime.so.1`,
  '/usr/lib/faketime/libfaketime.so.1',
  '/usr/local/lib/faketime/libfaketime.so.1',
];

export function libfaketime(): string {
  const found = CANDIDATES.find((p) => existsSync(p));
  if (found === undefined)
    throw new Error(
      'libfaketime not found: install the Debian package `faketime` (scripts/test-deps.sh does)',
    );
  return found;
}

/**
 * Environment for a child whose Date.now() is shifted by `offset` (e.g. '+30s', '-30s').
 * Only the wall clock moves: CLOCK_MONOTONIC (Node's timers, performance.now) is left alone.
 */
export function faketimeEnv(offset: string): NodeJS.ProcessEnv {
  return {
    LD_PRELOAD: libfaketime(),
    FAKETIME: offset,
    FAKETIME_DONT_FAKE_MONOTONIC: '1',
  };
}
