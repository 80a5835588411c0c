// Failover measurements: an open-loop load at a fixed rate that records every request's outcome
// with its time, a poller of the admin `GET /services` that records when targets change health,
// and the summary of a run around a target's death.
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { httpGet } from './net.js';

/**
 * @typedef {object} Sample
 * @property {number} sentMs  when the request was due, ms after the load started
 * @property {number} doneMs  when its answer (or its error) arrived, ms after the load started
 * @property {number} status  HTTP status; 0 when there was none
 * @property {string} [error]  transport error (ECONNRESET, timeout, …), or 'not-sent'
 * @property {string} [detail]  a failed answer's problem detail
 */

/**
 * @typedef {object} LoadResult
 * @property {number} startedAt  performance.now() when the load started: samples count from there
 * @property {Sample[]} samples  in the order the requests were due
 * @property {number[]} actionsMs  when each action ran, ms after the load started
 */

/**
 * Sends `rate` GET requests per second for `durationMs`, each when it is due whatever happened
 * to the earlier ones (open loop): a closed-loop client would slow down while the gateway
 * struggles and so hide the errors a real population of clients would see. `actions` run at
 * their time on the same clock (e.g. killing a target).
 * @param {object} opts
 * @param {string} opts.url
 * @param {number} opts.rate  requests per second
 * @param {number} opts.durationMs
 * @param {number} [opts.timeoutMs]  per request; a request still unanswered then is an error
 * @param {number} [opts.maxInFlight]  bounds the client: a request due beyond it is not sent
 * @param {{ atMs: number, run: () => void }[]} [opts.actions]
 * @returns {Promise<LoadResult>}
 */
export async function fixedRateLoad({
  url,
  rate,
  durationMs,
  timeoutMs = 2000,
  maxInFlight = 256,
  actions = [],
}) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: maxInFlight });
  const total = Math.round((rate * durationMs) / 1000);
  const intervalMs = 1000 / rate;
  /** @type {Sample[]} */
  const samples = [];
  /** @type {Promise<void>[]} */
  const pending = [];
  /** @type {number[]} */
  const actionsMs = actions.map(() => Number.NaN);
  let inFlight = 0;
  const startedAt = performance.now();
  const now = () => performance.now() - startedAt;

  const timers = actions.map((action, i) =>
    setTimeout(() => {
      actionsMs[i] = now();
      action.run();
    }, action.atMs),
  );

  /** @param {number} sentMs */
  const send = (sentMs) => {
    /** @type {Sample} */
    const sample = { sentMs, doneMs: Number.NaN, status: 0 };
    samples.push(sample);
    if (inFlight >= maxInFlight) {
      sample.doneMs = now();
      sample.error = 'not-sent';
      return;
    }
    inFlight++;
    pending.push(
      new Promise((resolve) => {
        let settled = false;
        const settle = (/** @type {number} */ status, /** @type {string | undefined} */ error) => {
          if (settled) return;
          settled = true;
          inFlight--;
          sample.doneMs = now();
          sample.status = status;
          if (error !== undefined) sample.error = error;
          resolve();
        };
        const req = http.get(url, { agent, timeout: timeoutMs }, (res) => {
          const status = res.statusCode ?? 0;
          // A failure's problem+json says why (refused, reset, breaker open): kept for the summary.
          let body = '';
          if (status < 200 || status > 299) {
            res.setEncoding('utf8');
            res.on('data', (chunk) => (body = (body + chunk).slice(0, 4096)));
          } else res.resume();
          res.on('error', (err) => settle(status, errorCode(err)));
          res.on('end', () => {
            if (body) sample.detail = problemDetail(body);
            settle(status, undefined);
          });
        });
        req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'timeout' })));
        req.on('error', (err) => settle(0, errorCode(err)));
      }),
    );
  };

  // Catches up when a timer fires late, so the rate holds even on a busy machine.
  await new Promise((resolve) => {
    let next = 0;
    const tick = () => {
      const t = now();
      while (next < total && next * intervalMs <= t) send(next++ * intervalMs);
      if (next < total) setTimeout(tick, Math.max(0, next * intervalMs - now()));
      else resolve(undefined);
    };
    tick();
  });
  await Promise.all(pending);
  for (const timer of timers) clearTimeout(timer);
  agent.destroy();
  return { startedAt, samples, actionsMs };
}

/**
 * The `detail` of a problem+json body, else its start.
 * @param {string} body
 */
function problemDetail(body) {
  try {
    const detail = JSON.parse(body)?.detail;
    if (typeof detail === 'string') return detail;
  } catch {
    // not JSON
  }
  return body.slice(0, 80);
}

/** @param {unknown} err */
function errorCode(err) {
  const code = /** @type {{ code?: unknown }} */ (err)?.code;
  return typeof code === 'string' ? code : err instanceof Error ? err.message : String(err);
}

/**
 * @typedef {object} HealthChange
 * @property {number} at  performance.now() of the poll that saw it
 * @property {string} target
 * @property {boolean} healthy
 */

/**
 * Polls the admin `GET /services` every `intervalMs` and records each change of a target's
 * `healthy` (the first poll records every target). Best effort: a failed poll is skipped.
 * @param {{ adminUrl: string, service: string, intervalMs?: number }} opts
 * @returns {{ stop: () => Promise<HealthChange[]> }}
 */
export function watchTargetHealth({ adminUrl, service, intervalMs = 25 }) {
  /** @type {HealthChange[]} */
  const changes = [];
  /** @type {Map<string, boolean>} */
  const last = new Map();
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      try {
        const res = await httpGet(`${adminUrl}/services`, { timeoutMs: 1000 });
        const at = performance.now();
        for (const t of targetsOf(res.body, service)) {
          if (last.get(t.target) !== t.healthy) changes.push({ at, ...t });
          last.set(t.target, t.healthy);
        }
      } catch {
        // the next poll may work
      }
      await sleep(intervalMs);
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await loop;
      return changes;
    },
  };
}

/**
 * The targets of one service in a `GET /services` body; [] when the body is not what is expected.
 * @param {string} body
 * @param {string} service
 * @returns {{ target: string, healthy: boolean }[]}
 */
export function targetsOf(body, service) {
  /** @type {{ target: string, healthy: boolean }[]} */
  const out = [];
  try {
    const services = JSON.parse(body)?.services;
    const s = Array.isArray(services) ? services.find((x) => x?.name === service) : undefined;
    for (const t of Array.isArray(s?.targets) ? s.targets : []) {
      if (typeof t?.target === 'string' && typeof t?.healthy === 'boolean') {
        out.push({ target: t.target, healthy: t.healthy });
      }
    }
  } catch {
    // not JSON: no targets
  }
  return out;
}

/** @param {Sample} s */
export function isFailure(s) {
  return s.error !== undefined || s.status < 200 || s.status > 299;
}

/**
 * @param {number[]} values
 * @param {number} q  0..1
 */
export function quantile(values, q) {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  return /** @type {number} */ (sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? NaN);
}

/**
 * @typedef {object} FailoverSummary
 * @property {number} requests
 * @property {number} errors  non-2xx answers and transport errors
 * @property {number} errorPct
 * @property {number} errorsBeforeKill  should be 0: otherwise the setup itself is failing
 * @property {number} notSent  requests the client could not send (its in-flight bound)
 * @property {Record<string, number>} failures  by status and problem detail, or by transport error
 * @property {number | null} firstErrorMs  after the kill, by arrival; null: no error
 * @property {number | null} lastErrorMs  after the kill, by arrival; null: no error
 * @property {boolean} recovered  no request due in the last `settleMs` of the run failed
 * @property {number | null} detectedMs  when the admin API first showed the target unhealthy
 * @property {{ p50: number, p99: number, max: number }} latencyAfterKillMs
 */

/**
 * What the clients saw around the kill of `killedTarget` at `killMs` (ms after the load started).
 * @param {object} opts
 * @param {Sample[]} opts.samples
 * @param {number} opts.killMs
 * @param {number} opts.durationMs
 * @param {HealthChange[]} [opts.changes]
 * @param {number} [opts.startedAt]  the load's performance.now() origin, for `changes`
 * @param {string} [opts.killedTarget]  its origin ("http://127.0.0.1:port"), as the admin API names it
 * @param {number} [opts.settleMs]
 * @returns {FailoverSummary}
 */
export function summariseFailover({
  samples,
  killMs,
  durationMs,
  changes = [],
  startedAt = 0,
  killedTarget,
  settleMs = 1000,
}) {
  const failed = samples.filter(isFailure);
  const after = failed.filter((s) => s.doneMs >= killMs);
  /** @type {Record<string, number>} */
  const failures = {};
  for (const s of failed) {
    const key = s.error ?? `${s.status}${s.detail ? ` ${s.detail}` : ''}`;
    failures[key] = (failures[key] ?? 0) + 1;
  }
  const arrivals = after.map((s) => s.doneMs);
  const detected = changes.find((c) => c.target === killedTarget && !c.healthy && c.at - startedAt >= killMs);
  const latencies = samples.filter((s) => s.sentMs >= killMs).map((s) => s.doneMs - s.sentMs);
  return {
    requests: samples.length,
    errors: failed.length,
    errorPct: samples.length ? (100 * failed.length) / samples.length : 0,
    errorsBeforeKill: failed.length - after.length,
    notSent: failed.filter((s) => s.error === 'not-sent').length,
    failures,
    firstErrorMs: arrivals.length ? Math.min(...arrivals) - killMs : null,
    lastErrorMs: arrivals.length ? Math.max(...arrivals) - killMs : null,
    recovered: !failed.some((s) => s.sentMs >= durationMs - settleMs),
    detectedMs: detected ? detected.at - startedAt - killMs : null,
    latencyAfterKillMs: {
      p50: quantile(latencies, 0.5),
      p99: quantile(latencies, 0.99),
      max: latencies.length ? Math.max(...latencies) : Number.NaN,
    },
  };
}
