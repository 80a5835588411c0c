// Running wrk and parsing its report.
import { spawnProcess } from './proc.js';

/** Milliseconds per unit of wrk's time figures. */
const TIME_UNITS_MS = { us: 0.001, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/**
 * Converts one of wrk's time figures ('820.00us', '1.19ms', '1.02s', '1.50m') to milliseconds.
 * @param {string} text
 * @returns {number}
 */
export function parseTimeMs(text) {
  const match = /^([\d.]+)(us|ms|s|m|h)$/.exec(text.trim());
  if (!match) return Number.NaN;
  const ms = Number(match[1]) * TIME_UNITS_MS[/** @type {keyof typeof TIME_UNITS_MS} */ (match[2])];
  return Math.round(ms * 1e6) / 1e6;
}

/**
 * Converts a wrk duration ('10s', '2m', '1h', or a bare number of seconds) to seconds.
 * @param {string | number} duration
 * @returns {number}
 */
export function parseDurationS(duration) {
  const match = /^(\d+(?:\.\d+)?)\s*(s|m|h)?$/.exec(String(duration).trim());
  if (!match) throw new Error(`invalid duration '${duration}' (expected e.g. 10s, 2m)`);
  const factor = { s: 1, m: 60, h: 3600 }[/** @type {'s' | 'm' | 'h'} */ (match[2] ?? 's')];
  return Number(match[1]) * factor;
}

/**
 * @typedef {object} WrkErrors
 * @property {number} connect
 * @property {number} read
 * @property {number} write
 * @property {number} timeout
 * @property {number} non2xx  wrk's 'Non-2xx or 3xx responses'
 */

/**
 * @typedef {object} WrkResult
 * @property {number} requests
 * @property {number} seconds  measured duration
 * @property {number} rps  requests per second
 * @property {{ avg: number, stdev: number, max: number, p50: number, p75: number, p90: number, p99: number }} latencyMs
 * @property {WrkErrors} errors
 * @property {number} errorCount  sum of all errors
 */

/**
 * Parses the text wrk prints (run with --latency for the percentiles).
 * @param {string} text
 * @returns {WrkResult}
 */
export function parseWrk(text) {
  const num = (/** @type {RegExp} */ re) => {
    const m = re.exec(text);
    return m ? Number(m[1]) : Number.NaN;
  };
  const time = (/** @type {RegExp} */ re) => {
    const m = re.exec(text);
    return m?.[1] ? parseTimeMs(m[1]) : Number.NaN;
  };
  const totals = /(\d+) requests in ([\d.]+(?:us|ms|s|m|h)),/.exec(text);
  const stats = /^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)/m.exec(text);
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  /** @type {WrkErrors} */
  const errors = {
    connect: Number(socket?.[1] ?? 0),
    read: Number(socket?.[2] ?? 0),
    write: Number(socket?.[3] ?? 0),
    timeout: Number(socket?.[4] ?? 0),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1] ?? 0),
  };
  const result = {
    requests: totals ? Number(totals[1]) : Number.NaN,
    seconds: totals?.[2] ? parseTimeMs(totals[2]) / 1000 : Number.NaN,
    rps: num(/Requests\/sec:\s+([\d.]+)/),
    latencyMs: {
      avg: stats?.[1] ? parseTimeMs(stats[1]) : Number.NaN,
      stdev: stats?.[2] ? parseTimeMs(stats[2]) : Number.NaN,
      max: stats?.[3] ? parseTimeMs(stats[3]) : Number.NaN,
      p50: time(/^\s*50%\s+(\S+)/m),
      p75: time(/^\s*75%\s+(\S+)/m),
      p90: time(/^\s*90%\s+(\S+)/m),
      p99: time(/^\s*99%\s+(\S+)/m),
    },
    errors,
    errorCount: Object.values(errors).reduce((a, b) => a + b, 0),
  };
  if (!Number.isFinite(result.rps)) throw new Error(`could not parse wrk output:\n${text}`);
  return result;
}

/**
 * @typedef {object} WrkOptions
 * @property {string} url
 * @property {string | number} [duration]  e.g. '10s'
 * @property {number} [threads]
 * @property {number} [connections]
 * @property {Record<string, string>} [headers]
 * @property {number | null} [cpu]  CPU to pin wrk to
 * @property {string} [timeout]  wrk's per-request timeout (its default is 2s)
 * @property {string} [script]  a wrk Lua script (-s), e.g. to vary a header per request
 */

/**
 * Runs wrk once (always with --latency) and returns the parsed report plus the raw text.
 * @param {WrkOptions} opts
 * @returns {Promise<WrkResult & { raw: string }>}
 */
export async function runWrk({
  url,
  duration = '10s',
  threads = 1,
  connections = 64,
  headers = {},
  cpu = null,
  timeout,
  script,
}) {
  const args = ['-t', String(threads), '-c', String(connections), '-d', String(duration), '--latency'];
  if (timeout) args.push('--timeout', timeout);
  if (script) args.push('-s', script);
  for (const [name, value] of Object.entries(headers)) args.push('-H', `${name}: ${value}`);
  args.push(url);
  const wrk = spawnProcess({ name: 'wrk', cmd: 'wrk', args, cpu, collect: true });
  // wrk stops by itself; this only guards against a hung run.
  const limitMs = parseDurationS(duration) * 1000 + 15_000;
  const guard = setTimeout(() => wrk.kill('SIGKILL'), limitMs);
  const { code, signal } = await wrk.exited;
  clearTimeout(guard);
  if (code !== 0) {
    throw new Error(`wrk failed (${signal ?? `exit ${code}`}): ${wrk.output().trim() || 'no output'}`);
  }
  const raw = wrk.stdout();
  return { ...parseWrk(raw), raw };
}
