// What every benchmark runner reads from the environment, how it gives up, and what it reports
// about the tools: one copy for run.js, resilience.js and observability.js.
import os from 'node:os';
import { runSync, which } from './proc.js';
import { parseDurationS } from './wrk.js';

/**
 * Ends the runner with a message (exit code 2: a usage or setup problem, not a measurement).
 * @param {string} message
 * @returns {never}
 */
export function fail(message) {
  console.error(`bench: ${message}`);
  process.exit(2);
}

/**
 * A positive number from the environment, or `fallback` when unset.
 * @param {string} name
 * @param {number} fallback
 * @param {{ integer?: boolean }} [opts]
 */
export function envNumber(name, fallback, { integer = false } = {}) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (integer ? !Number.isInteger(n) || n < 1 : !Number.isFinite(n) || n <= 0)
    fail(`${name} must be a positive ${integer ? 'integer' : 'number'}, got '${raw}'`);
  return n;
}

/**
 * BENCH_DURATION, BENCH_WARMUP and BENCH_RUNS; with BENCH_QUICK=1 the defaults shrink to one run
 * of 3 s after a 1 s warm-up (explicit settings still win).
 */
export function readTiming() {
  const quick = process.env.BENCH_QUICK === '1';
  const duration = process.env.BENCH_DURATION || (quick ? '3s' : '10s');
  const warmupRaw = process.env.BENCH_WARMUP ?? (quick ? '1s' : '3s');
  const warmup = warmupRaw === '' || warmupRaw === '0' ? null : warmupRaw;
  try {
    parseDurationS(duration);
    if (warmup) parseDurationS(warmup);
  } catch (err) {
    fail(err instanceof Error ? err.message : String(err));
  }
  return { quick, duration, warmup, runs: envNumber('BENCH_RUNS', quick ? 1 : 3, { integer: true }) };
}

/**
 * Bounds the whole run: a hung step cannot keep it going forever.
 * @param {number} budgetS
 */
export function giveUpAfter(budgetS) {
  setTimeout(() => {
    console.error(`\nbench: still running after ${Math.round(budgetS)} s, giving up`);
    process.exit(1); // the exit hook kills every child
  }, budgetS * 1000).unref();
}

/** nginx's and wrk's versions, and a line naming them with node and the CPU model. */
export function toolVersions() {
  const nginx = runSync(which('nginx') ?? 'nginx', ['-v']).output.replace(/^nginx version: /, '');
  const wrk = runSync('wrk', ['-v']).output.split('\n')[0] ?? '';
  return { nginx, wrk, line: `${nginx}; ${wrk}; node ${process.version}; ${os.cpus()[0]?.model ?? ''}` };
}
