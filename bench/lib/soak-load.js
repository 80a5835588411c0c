// The soak's load generator: `connections` keep-alive clients (one undici Pool, no pipelining),
// each sending its next request when the previous one ended, optionally paced to a total rate.
// It counts exactly: every request is `sent` once, then ends as one response (counted by status
// after its body was read to the end) or one connection error (counted by error code), never
// both; `inflight` is what has neither yet. undici does not retry by itself (no RetryAgent), so
// one request sent is one request on the wire.
import { performance } from 'node:perf_hooks';
import { Pool } from 'undici';

/**
 * @typedef {object} Kind  one kind of request in the mix
 * @property {string} name
 * @property {number} weight
 * @property {'GET' | 'POST'} method
 * @property {(i: number) => string} path  i: the request's sequence number
 * @property {(i: number) => Record<string, string>} headers  i: the request's sequence number
 * @property {string} [body]
 */

/**
 * @typedef {object} KindCounts
 * @property {number} sent
 * @property {Record<string, number>} status  responses by status code
 * @property {Record<string, number>} errors  connection errors by code
 */

/**
 * @typedef {object} LoadCounts
 * @property {number} sent
 * @property {number} received
 * @property {number} errors
 * @property {number} inflight
 * @property {Record<string, number>} status
 * @property {Record<string, number>} errorCodes
 * @property {Record<string, KindCounts>} kinds
 * @property {Map<number, Record<string, Record<string, number>>>} seconds  second since start →
 *   kind → status class ('2xx', '429', '4xx', '5xx', 'error') → count: when things happened
 */

/**
 * Deterministic pseudo-random numbers (mulberry32), so that two runs send the same mix.
 * @param {number} seed
 */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A picker of kinds by weight.
 * @param {Kind[]} kinds
 * @param {() => number} random
 */
export function weightedPicker(kinds, random) {
  const total = kinds.reduce((s, k) => s + k.weight, 0);
  return () => {
    let r = random() * total;
    for (const k of kinds) {
      r -= k.weight;
      if (r < 0) return k;
    }
    return /** @type {Kind} */ (kinds[kinds.length - 1]);
  };
}

/**
 * The status class a response or error is filed under in the per-second timeline.
 * @param {number | null} status  null: a connection error
 */
export function statusClass(status) {
  if (status === null) return 'error';
  if (status === 429) return '429';
  if (status >= 500) return '5xx';
  if (status >= 400) return '4xx';
  return '2xx';
}

/**
 * Starts the load; `stop()` stops sending and resolves once every request in flight has ended.
 * @param {object} opts
 * @param {string} opts.origin  e.g. http://127.0.0.1:8080
 * @param {Kind[]} opts.kinds
 * @param {number} opts.connections
 * @param {number} [opts.rate]  requests per second in all; 0 or absent: as fast as answers come
 * @param {number} [opts.maxRequests]  stop sending after this many; absent: until stop()
 * @param {number} [opts.seed]
 * @param {number} [opts.timeoutMs]  a response whose headers or body take longer is an error
 */
export function startLoad({
  origin,
  kinds,
  connections,
  rate = 0,
  maxRequests = Infinity,
  seed = 1,
  timeoutMs = 30_000,
}) {
  const pool = new Pool(origin, {
    connections,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });
  const pick = weightedPicker(kinds, prng(seed));
  const started = performance.now();
  /** @type {LoadCounts} */
  const counts = {
    sent: 0,
    received: 0,
    errors: 0,
    inflight: 0,
    status: {},
    errorCodes: {},
    kinds: Object.fromEntries(kinds.map((k) => [k.name, { sent: 0, status: {}, errors: {} }])),
    seconds: new Map(),
  };
  let running = true;
  /** next send time (ms, performance.now()) when paced */
  let nextAt = started;
  const interval = rate > 0 ? 1000 / rate : 0;
  /** @type {Promise<void>[]} */
  const loops = [];

  /** @param {string} kind @param {number | null} status */
  const mark = (kind, status) => {
    const sec = Math.floor((performance.now() - started) / 1000);
    let bucket = counts.seconds.get(sec);
    if (bucket === undefined) counts.seconds.set(sec, (bucket = {}));
    const byClass = (bucket[kind] ??= {});
    const cls = statusClass(status);
    byClass[cls] = (byClass[cls] ?? 0) + 1;
  };

  const loop = async () => {
    while (running && counts.sent < maxRequests) {
      if (interval > 0) {
        const now = performance.now();
        // never bank more than one interval of idle time: after a stall, no burst
        nextAt = Math.max(nextAt + interval, now - interval);
        const wait = nextAt - now;
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        if (!running) break;
      }
      const kind = pick();
      const i = counts.sent;
      const kc = /** @type {KindCounts} */ (counts.kinds[kind.name]);
      counts.sent++;
      kc.sent++;
      counts.inflight++;
      try {
        const res = await pool.request({
          method: kind.method,
          path: kind.path(i),
          headers: kind.headers(i),
          ...(kind.body !== undefined ? { body: kind.body } : {}),
        });
        await res.body.dump({ limit: 1 << 20 });
        const s = String(res.statusCode);
        counts.received++;
        counts.status[s] = (counts.status[s] ?? 0) + 1;
        kc.status[s] = (kc.status[s] ?? 0) + 1;
        mark(kind.name, res.statusCode);
      } catch (err) {
        const code =
          /** @type {{ code?: string }} */ (err)?.code ?? (err instanceof Error ? err.name : 'unknown');
        counts.errors++;
        counts.errorCodes[code] = (counts.errorCodes[code] ?? 0) + 1;
        kc.errors[code] = (kc.errors[code] ?? 0) + 1;
        mark(kind.name, null);
      } finally {
        counts.inflight--;
      }
    }
  };
  for (let c = 0; c < connections; c++) loops.push(loop());
  const done = Promise.all(loops);

  return {
    counts,
    started,
    /** resolves when maxRequests were sent and answered */
    done,
    /** stops sending; resolves once nothing is in flight (the pool is then closed) */
    async stop() {
      running = false;
      await done;
      await pool.close();
    },
  };
}
