// h2load (Debian's nghttp2-client) for HTTP/2 load, and the self-signed certificate the TLS and
// HTTP/2 runs need. wrk speaks HTTP/1.1 only.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { makeTempDir, spawnProcess } from './proc.js';
import { parseDurationS } from './wrk.js';

/**
 * A self-signed P-256 certificate for 127.0.0.1 (what handshakes cost depends on the key type).
 * @param {string} dir
 * @returns {{ cert: string, key: string }}
 */
export function selfSignedCertificate(dir) {
  const cert = path.join(dir, 'bench.crt');
  const key = path.join(dir, 'bench.key');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { stdio: 'ignore' },
  );
  return { cert, key };
}

/**
 * @typedef {object} H2loadResult
 * @property {number} rps
 * @property {number} requests  requests done
 * @property {number} non2xx
 * @property {number} failed
 * @property {string | undefined} mean  h2load's mean time for request, e.g. '8.12ms'
 * @property {string | undefined} protocol  the negotiated application protocol ('h2')
 * @property {{ p50: number, p99: number }} latencyMs  from the per-request log (NaN without one)
 * @property {string} raw
 */

/**
 * Parses h2load's summary.
 * @param {string} out
 * @returns {Omit<H2loadResult, 'latencyMs' | 'raw'>}
 */
export function parseH2load(out) {
  const status = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(out);
  const counts = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed/.exec(out);
  return {
    rps: Number(/finished in [^,]+, ([\d.]+) req\/s/.exec(out)?.[1]),
    requests: Number(counts?.[3] ?? Number.NaN),
    non2xx: status ? Number(status[2]) + Number(status[3]) + Number(status[4]) : 0,
    failed: Number(counts?.[5] ?? 0),
    mean: /time for request:\s+\S+\s+\S+\s+(\S+)/.exec(out)?.[1],
    protocol: /Application protocol: (\S+)/.exec(out)?.[1],
  };
}

/**
 * A percentile (0..1) of sorted numbers, nearest rank.
 * @param {number[]} sorted
 * @param {number} q
 */
export function percentile(sorted, q) {
  if (sorted.length === 0) return Number.NaN;
  return /** @type {number} */ (sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? 0);
}

/**
 * Runs h2load once for `duration` (one thread, `connections` × `streams` in flight); p50 and p99
 * come from its per-request log (`--log-file`: start, status, microseconds to the end of the answer).
 * @param {{ url: string, duration: string, connections: number, streams?: number, cpu?: number | string | null }} opts
 * @returns {Promise<H2loadResult>}
 */
export async function runH2load({ url, duration, connections, streams = 1, cpu = null }) {
  const log = path.join(makeTempDir('gatehouse-bench-h2load-'), 'requests.tsv');
  const args = ['-t', '1', '-c', String(connections), '-m', String(streams)];
  args.push('-D', String(parseDurationS(duration)), `--log-file=${log}`, url);
  const proc = spawnProcess({ name: 'h2load', cmd: 'h2load', args, cpu, collect: true });
  // h2load may wait long for connections still in their TLS handshake when the duration ends (a
  // starved server): a longer margin than wrk's.
  const guard = setTimeout(() => proc.kill('SIGKILL'), parseDurationS(duration) * 1000 + 30_000);
  const { code } = await proc.exited;
  clearTimeout(guard);
  const out = proc.stdout();
  if (code !== 0) {
    const last = proc
      .output()
      .trim()
      .split('\n')
      .filter((l) => !l.startsWith('progress:'))
      .slice(-3);
    throw new Error(`h2load failed (exit ${code}): ${last.join(' / ')}`);
  }
  let latencies = [];
  try {
    latencies = readFileSync(log, 'utf8')
      .split('\n')
      .map((line) => Number(line.split('\t')[2]) / 1000)
      .filter(Number.isFinite)
      .sort((a, b) => a - b);
  } catch {
    // no log: the percentiles stay NaN
  }
  return {
    ...parseH2load(out),
    latencyMs: { p50: percentile(latencies, 0.5), p99: percentile(latencies, 0.99) },
    raw: out,
  };
}
