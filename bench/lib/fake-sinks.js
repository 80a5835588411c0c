// Fake collectors (Elasticsearch `_bulk`, OTLP/HTTP traces) as pinned child processes, and the
// reading of Prometheus text from the admin `/metrics`.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, httpGet, waitForPort } from './net.js';
import { spawnProcess } from './proc.js';

const SERVER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fake-sink-server.js');

/**
 * @typedef {object} SinkStats
 * @property {number} requests  `_bulk` or `/v1/traces` requests received
 * @property {number} items  documents or spans received
 * @property {number} bytes  request body bytes
 * @property {number} bad  malformed requests (refused, or not OTLP/JSON)
 */

/**
 * @typedef {object} FakeSink
 * @property {'elasticsearch' | 'otlp'} kind
 * @property {string} url  base URL: `logging.access.elasticsearch.url` or `tracing.otlpUrl`
 * @property {() => Promise<SinkStats>} stats  counters since the sink started
 * @property {() => Promise<void>} stop
 */

/**
 * Starts lib/fake-sink-server.js in its own process (pinned to `cpu` when given).
 * @param {{ kind: 'elasticsearch' | 'otlp', cpu?: number | null }} opts
 * @returns {Promise<FakeSink>}
 */
export async function startFakeSink({ kind, cpu = null }) {
  const port = await freePort();
  const proc = spawnProcess({
    name: `fake-${kind}`,
    cmd: process.execPath,
    args: [SERVER, '--kind', kind, '--port', String(port)],
    cpu,
  });
  const what = `fake ${kind}`;
  try {
    await waitForPort(port, { isAlive: proc.running, what });
  } catch (err) {
    await proc.stop();
    throw new Error(`${err instanceof Error ? err.message : err}\n${proc.output()}`);
  }
  const url = `http://127.0.0.1:${port}`;
  return {
    kind,
    url,
    async stats() {
      const res = await httpGet(`${url}/stats`);
      if (res.status !== 200) throw new Error(`${what}: GET /stats answered ${res.status}`);
      return /** @type {SinkStats} */ (JSON.parse(res.body));
    },
    stop: () => proc.stop(),
  };
}

/**
 * @param {SinkStats} before
 * @param {SinkStats} after
 * @returns {SinkStats}
 */
export function statsDelta(before, after) {
  return {
    requests: after.requests - before.requests,
    items: after.items - before.items,
    bytes: after.bytes - before.bytes,
    bad: after.bad - before.bad,
  };
}

/** @typedef {{ name: string, labels: Record<string, string>, value: number }} Sample */

/**
 * Parses Prometheus text exposition format into samples (comments and blank lines skipped).
 * @param {string} text
 * @returns {Sample[]}
 */
export function parsePrometheus(text) {
  /** @type {Sample[]} */
  const samples = [];
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] === undefined || m[3] === undefined) continue;
    /** @type {Record<string, string>} */
    const labels = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] ?? ''] = l[2] ?? '';
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

/**
 * Sum of the samples named `name` whose labels include `match`.
 * @param {Sample[]} samples
 * @param {string} name
 * @param {Record<string, string>} [match]
 */
export function sumOf(samples, name, match = {}) {
  return samples
    .filter((s) => s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v))
    .reduce((sum, s) => sum + s.value, 0);
}
