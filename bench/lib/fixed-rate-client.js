#!/usr/bin/env node
// An open-loop (fixed-rate) HTTP load client: sends `rate` requests per second whatever the answers
// do, and measures each request's latency from the moment it was due to be sent, so that a stall
// shows in the percentiles instead of slowing the sender (the "coordinated omission" of closed-loop
// clients such as wrk). Debian has no wrk2; this stands in for it at the rates of this benchmark.
//
//   node lib/fixed-rate-client.js --url URL --rate 5000 --duration 10 [--warmup 2] [--connections 64]
//
// Prints one JSON line: { sent, completed, errors, non2xx, p50Ms, p90Ms, p99Ms, p999Ms, maxMs, rate }.
// Requests due during the warm-up are sent but not recorded.
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    rate: { type: 'string' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    connections: { type: 'string', default: '64' },
  },
});
const rate = Number(values.rate);
const durationS = Number(values.duration);
const warmupS = Number(values.warmup);
if (!values.url || !(rate > 0) || !(durationS > 0) || !(warmupS >= 0)) {
  console.error('usage: node lib/fixed-rate-client.js --url URL --rate N --duration S [--warmup S]');
  process.exit(2);
}
const url = new URL(values.url);
const pool = new Pool(url.origin, { connections: Number(values.connections), pipelining: 1 });
const path = `${url.pathname}${url.search}`;

/** @type {number[]} */
const latencies = [];
let sent = 0;
let completed = 0;
let errors = 0;
let non2xx = 0;
const total = Math.round(rate * (warmupS + durationS));
const recordFrom = Math.round(rate * warmupS);
const start = performance.now();

/**
 * @param {number} i  index of the request: it is due at start + i / rate
 */
function send(i) {
  const due = start + (i * 1000) / rate;
  pool.request({ path, method: 'GET' }).then(
    async (res) => {
      await res.body.dump();
      const ms = performance.now() - due;
      completed++;
      if (res.statusCode < 200 || res.statusCode > 299) non2xx++;
      if (i >= recordFrom) latencies.push(ms);
    },
    () => {
      completed++;
      errors++;
    },
  );
}

// A 1 ms timer sends whatever has fallen due: no busy loop on the load core.
await new Promise((resolve) => {
  const timer = setInterval(() => {
    const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
    while (sent < due) send(sent++);
    if (sent >= total) {
      clearInterval(timer);
      resolve(undefined);
    }
  }, 1);
});
// The last answers, for at most 5 s.
const deadline = performance.now() + 5000;
while (completed < sent && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
await pool.destroy();

latencies.sort((a, b) => a - b);
const q = (/** @type {number} */ p) =>
  latencies.length
    ? (latencies[Math.min(latencies.length - 1, Math.ceil(p * latencies.length) - 1)] ?? 0)
    : null;
const round = (/** @type {number | null} */ v) => (v === null ? null : Math.round(v * 1000) / 1000);
console.log(
  JSON.stringify({
    rate,
    sent,
    completed,
    recorded: latencies.length,
    errors,
    non2xx,
    lost: sent - completed,
    p50Ms: round(q(0.5)),
    p90Ms: round(q(0.9)),
    p99Ms: round(q(0.99)),
    p999Ms: round(q(0.999)),
    maxMs: round(latencies.at(-1) ?? null),
  }),
);
