// measure(): start a system, warm it up, load it with wrk N times per mode, stop it, take medians.
import { httpGet } from './net.js';
import { runWrk } from './wrk.js';

/** @typedef {{ name: string, headers?: Record<string, string> }} Mode */

/** Keep-alive clients: wrk reuses its 64 connections. */
export const KEEP_ALIVE = Object.freeze({ name: 'ka', headers: {} });
/** A new client connection per request: the server closes after each answer. */
export const CLOSE = Object.freeze({ name: 'close', headers: { Connection: 'close' } });

/** Thrown by a system's start() to skip its row with a message instead of failing the whole run. */
export class SkipError extends Error {}

/**
 * @param {number[]} values
 * @returns {number}
 */
export function median(values) {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? /** @type {number} */ (sorted[mid])
    : ((sorted[mid - 1] ?? 0) + (sorted[mid] ?? 0)) / 2;
}

/**
 * @typedef {object} ModeResult
 * @property {(import('./wrk.js').WrkResult & { raw: string })[]} runs
 * @property {{ rps: number, p50Ms: number, p99Ms: number }} median
 * @property {import('./wrk.js').WrkErrors} errors  summed over the runs
 * @property {number} errorCount
 * @property {boolean} flagged  some request failed: the figures are not trustworthy
 * @property {string} [error]  wrk itself failed
 */

/**
 * @typedef {object} Measurement
 * @property {string} name
 * @property {string} [url]
 * @property {string} [skipped]  why the system was not measured
 * @property {string[]} warnings
 * @property {{ status: number, bytes: number } | undefined} [check]  one GET before the load
 * @property {Record<string, ModeResult>} modes
 */

/**
 * @typedef {object} MeasureOptions
 * @property {string} name
 * @property {string} [url]  URL to load; start() may return it instead
 * @property {Record<string, string>} [headers]  sent with every request, in every mode
 * @property {() => Promise<string | { url?: string, stop?: () => Promise<void>, running?: () => boolean } | void>} [start]
 *   starts the system; throw SkipError (or anything) to skip the row
 * @property {() => Promise<void>} [stop]  stops the system (a stop() returned by start() is called too)
 * @property {() => boolean} [running]  false when the system died (a running() returned by start() is used too)
 * @property {Mode[]} [modes]  default: keep-alive only
 * @property {number} [runs]  measured runs per mode (default 3)
 * @property {string} [duration]  one run (default '10s')
 * @property {string | null} [warmup]  one wrk run before measuring, not counted (default '3s'; null: none)
 * @property {number} [threads]  wrk threads (default 1)
 * @property {number} [connections]  wrk connections (default 64)
 * @property {number | null} [wrkCpu]  CPU wrk is pinned to (default 0)
 * @property {(line: string) => void} [log]
 * @property {string} [script]  a wrk Lua script for every run
 */

/**
 * Measures one system: start, one GET as a check, warm-up, `runs` wrk runs per mode, stop.
 * Never throws for a failure of the system itself: the result then has `skipped` or a mode `error`.
 * @param {MeasureOptions} opts
 * @returns {Promise<Measurement>}
 */
export async function measure(opts) {
  const {
    name,
    headers = {},
    modes = [KEEP_ALIVE],
    runs = 3,
    duration = '10s',
    warmup = '3s',
    threads = 1,
    connections = 64,
    wrkCpu = 0,
    log = console.log,
  } = opts;
  /** @type {Measurement} */
  const result = { name, warnings: [], modes: {} };
  /** @type {Array<() => Promise<void>>} */
  const stops = [];
  if (opts.stop) stops.push(opts.stop);
  let running = opts.running ?? (() => true);
  let url = opts.url;
  const warn = (/** @type {string} */ msg) => {
    result.warnings.push(msg);
    log(`  ! ${msg}`);
  };

  try {
    log(`\n== ${name}`);
    try {
      const started = opts.start ? await opts.start() : undefined;
      if (typeof started === 'string') url = started;
      else if (started) {
        url = started.url ?? url;
        if (started.stop) stops.unshift(started.stop);
        if (started.running) running = started.running;
      }
      if (!url) throw new Error('no URL to measure');
    } catch (err) {
      result.skipped = err instanceof Error ? err.message : String(err);
      log(`  skipped: ${result.skipped.replace(/\n/g, '\n    ')}`);
      return result;
    }
    result.url = url;

    try {
      const res = await httpGet(url, { headers });
      result.check = { status: res.status, bytes: Buffer.byteLength(res.body) };
      log(`  check: GET ${url} -> ${res.status}, ${result.check.bytes} bytes`);
      if (res.status < 200 || res.status > 299) warn(`the check request answered ${res.status}`);
    } catch (err) {
      warn(`the check request failed: ${err instanceof Error ? err.message : err}`);
    }

    const wrkBase = {
      url,
      threads,
      connections,
      cpu: wrkCpu,
      ...(opts.script ? { script: opts.script } : {}),
    };
    if (warmup) {
      log(`  warm-up ${warmup}`);
      const firstHeaders = { ...headers, ...(modes[0]?.headers ?? {}) };
      try {
        const w = await runWrk({ ...wrkBase, duration: warmup, headers: firstHeaders });
        if (w.errorCount) warn(`warm-up errors: ${formatErrors(w.errors)}`);
      } catch (err) {
        warn(`warm-up failed: ${err instanceof Error ? err.message : err}`);
      }
    }

    for (const mode of modes) {
      /** @type {ModeResult} */
      const mr = {
        runs: [],
        median: { rps: Number.NaN, p50Ms: Number.NaN, p99Ms: Number.NaN },
        errors: { connect: 0, read: 0, write: 0, timeout: 0, non2xx: 0 },
        errorCount: 0,
        flagged: false,
      };
      result.modes[mode.name] = mr;
      for (let i = 1; i <= runs; i++) {
        if (!running()) {
          mr.error = `${name} is no longer running`;
          mr.flagged = true;
          warn(mr.error);
          break;
        }
        try {
          const r = await runWrk({ ...wrkBase, duration, headers: { ...headers, ...(mode.headers ?? {}) } });
          mr.runs.push(r);
          for (const key of /** @type {(keyof typeof mr.errors)[]} */ (Object.keys(mr.errors))) {
            mr.errors[key] += r.errors[key];
          }
          mr.errorCount += r.errorCount;
          const errs = r.errorCount ? `  ERRORS ${formatErrors(r.errors)}` : '';
          log(
            `  ${mode.name.padEnd(5)} run ${i}/${runs}: ${formatInt(r.rps).padStart(7)} rps` +
              `  p50 ${formatMs(r.latencyMs.p50)} ms  p99 ${formatMs(r.latencyMs.p99)} ms${errs}`,
          );
        } catch (err) {
          mr.error = err instanceof Error ? err.message : String(err);
          warn(`${mode.name} run ${i} failed: ${mr.error}`);
          break;
        }
      }
      mr.median = {
        rps: median(mr.runs.map((r) => r.rps)),
        p50Ms: median(mr.runs.map((r) => r.latencyMs.p50)),
        p99Ms: median(mr.runs.map((r) => r.latencyMs.p99)),
      };
      mr.flagged = mr.flagged || mr.errorCount > 0 || Boolean(mr.error);
      if (mr.errorCount) warn(`${mode.name}: ${formatErrors(mr.errors)} over ${mr.runs.length} runs`);
    }
    if (!running()) warn(`${name} exited during the measurement`);
    return result;
  } finally {
    for (const stop of stops) {
      try {
        await stop();
      } catch (err) {
        log(`  ! stopping ${name} failed: ${err instanceof Error ? err.message : err}`);
      }
    }
  }
}

/**
 * @param {import('./wrk.js').WrkErrors} e
 * @returns {string}
 */
export function formatErrors(e) {
  const parts = [];
  if (e.non2xx) parts.push(`${e.non2xx} non-2xx/3xx`);
  const socket = e.connect + e.read + e.write + e.timeout;
  if (socket) {
    parts.push(`socket errors: connect ${e.connect}, read ${e.read}, write ${e.write}, timeout ${e.timeout}`);
  }
  return parts.join('; ') || 'none';
}

/**
 * 40772.3 -> '40 772' (thousands grouped by a space).
 * @param {number} n
 */
export function formatInt(n) {
  if (!Number.isFinite(n)) return '—';
  return String(Math.round(n)).replace(/\B(?=(\d{3})+(?!\d))/g, ' ');
}

/**
 * @param {number} n
 */
export function formatMs(n) {
  return Number.isFinite(n) ? n.toFixed(2) : '—';
}
