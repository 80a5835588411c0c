#!/usr/bin/env node
// Cost of an open admin console on the proxy: requests/s, p99 and the gateway's CPU time per
// request under the same wrk load, without a console, and with N consoles open on the overview
// (each fetches what the overview fetches, at its intervals: GET /metrics every 2 s, GET /status
// every 10 s, with a bearer token). The variants alternate, run after run, so that a drift of the
// machine hits both. See README.md.
//
//   node bench/console-cost.js            (consoles: 0, 1 and 10)
//
// Env: BENCH_RUNS (3), BENCH_DURATION (10s), BENCH_WARMUP (3s); BENCH_QUICK=1 for 1 run of 3 s;
// BENCH_GATEHOUSE_DIR: the checkout whose bin/ and dist/ are run.
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startGatehouse } from './lib/gatehouse.js';
import { formatInt, formatMs, median } from './lib/measure.js';
import { httpGet } from './lib/net.js';
import { startNginx } from './lib/nginx.js';
import { installCleanupHooks } from './lib/proc.js';
import { readTiming } from './lib/settings.js';
import { runWrk } from './lib/wrk.js';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const GATEHOUSE_DIR = path.resolve(process.env.BENCH_GATEHOUSE_DIR || path.join(BENCH_DIR, '..'));
const TOKEN = 'console-bench-token-0123456789abcdef';
/** what the overview page polls, and how often (ui/src/pages/overview.tsx) */
const POLLS = [
  { path: '/metrics', everyMs: 2000 },
  { path: '/status', everyMs: 10_000 },
];
const CONSOLES = [0, 1, 10];
/** clock ticks per second of /proc/<pid>/stat (USER_HZ: 100 on Linux) */
const HZ = 100;

/** CPU seconds (user + system) the process has used so far. */
function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / HZ;
}

/** N consoles polling the admin port; resolves the number of polls made when stopped. */
function openConsoles(adminUrl, n) {
  const timers = [];
  let polls = 0;
  let failures = 0;
  for (let i = 0; i < n; i++) {
    for (const { path: p, everyMs } of POLLS) {
      const poll = () =>
        // a fresh connection per poll: a little dearer than a browser's keep-alive
        httpGet(`${adminUrl}${p}`, { headers: { authorization: `Bearer ${TOKEN}` }, timeoutMs: 5000 })
          .then((r) => {
            polls++;
            if (r.status !== 200) failures++;
          })
          .catch(() => failures++);
      // spread the consoles over the interval, as browsers opened at different times are
      timers.push(
        setTimeout(
          () => {
            void poll();
            timers.push(setInterval(poll, everyMs));
          },
          (everyMs * i) / Math.max(1, n),
        ),
      );
    }
  }
  return () => {
    for (const t of timers) clearInterval(t);
    return { polls, failures };
  };
}

async function main() {
  installCleanupHooks();
  const { runs, duration, warmup } = readTiming();
  // the gateway on one core, wrk and the upstream on the other (as the other benchmarks do)
  const [gwCpu, loadCpu] = os.availableParallelism() >= 2 ? [1, 0] : [null, null];
  const upstream = await startNginx({ name: 'upstream', cpu: loadCpu });
  const gw = await startGatehouse({
    repoDir: GATEHOUSE_DIR,
    cpu: gwCpu,
    upstreamUrl: upstream.url,
    configure: (c) => ({ ...c, admin: { ...c.admin, token: TOKEN, ui: true } }),
  });
  const pid = gw.proc.child.pid;
  try {
    // the console is served (a bench of a console that is not there would measure nothing)
    const page = await httpGet(`${gw.adminUrl}/ui`);
    if (page.status !== 200) throw new Error(`GET /ui answered ${page.status}: run npm run build`);
    // what one console's polls cost the gateway, measured alone (no load, so no noise from it)
    const POLL_SAMPLES = 200;
    const pollCpuMs = {};
    for (const { path: p } of POLLS) {
      for (let i = 0; i < 20; i++)
        await httpGet(`${gw.adminUrl}${p}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      const c0 = cpuSeconds(pid);
      for (let i = 0; i < POLL_SAMPLES; i++)
        await httpGet(`${gw.adminUrl}${p}`, { headers: { authorization: `Bearer ${TOKEN}` } });
      pollCpuMs[p] = ((cpuSeconds(pid) - c0) * 1000) / POLL_SAMPLES;
    }
    const perSecondMs = POLLS.reduce((sum, { path: p, everyMs }) => sum + (pollCpuMs[p] * 1000) / everyMs, 0);
    console.log(
      `one console's polls: ${POLLS.map(({ path: p }) => `GET ${p} ${pollCpuMs[p].toFixed(2)} ms CPU`).join(', ')}` +
        ` → ${perSecondMs.toFixed(2)} ms of gateway CPU per second (${(perSecondMs / 10).toFixed(3)} % of a core)`,
    );
    if (warmup) await runWrk({ url: gw.url, duration: warmup, cpu: loadCpu });
    /** @type {Record<number, { rps: number, p99Ms: number, cpuUs: number, polls: number }[]>} */
    const results = Object.fromEntries(CONSOLES.map((n) => [n, []]));
    for (let run = 0; run < runs; run++) {
      for (const n of CONSOLES) {
        const stop = openConsoles(gw.adminUrl, n);
        const cpu0 = cpuSeconds(pid);
        const r = await runWrk({ url: gw.url, duration, cpu: loadCpu });
        const cpu1 = cpuSeconds(pid);
        const { polls, failures } = stop();
        if (failures > 0) throw new Error(`${failures} console polls failed`);
        const cpuUs = ((cpu1 - cpu0) * 1e6) / r.requests;
        results[n].push({ rps: r.rps, p99Ms: r.latencyMs.p99, cpuUs, polls });
        console.log(
          `run ${run + 1}, ${n} console(s): ${formatInt(r.rps)} req/s, ${cpuUs.toFixed(1)} µs CPU/request, ${polls} polls`,
        );
      }
    }
    const base = results[0];
    const med = (rows, key) => median(rows.map((r) => r[key]));
    console.log(`\n| consoles open | req/s | p99 ms | gateway CPU µs/request | req/s ÷ none | CPU ÷ none |`);
    console.log('|---:|---:|---:|---:|---:|---:|');
    for (const n of CONSOLES) {
      const rows = results[n];
      console.log(
        `| ${n} | ${formatInt(med(rows, 'rps'))} | ${formatMs(med(rows, 'p99Ms'))} | ${med(rows, 'cpuUs').toFixed(1)} | ` +
          `${(med(rows, 'rps') / med(base, 'rps')).toFixed(3)} | ${(med(rows, 'cpuUs') / med(base, 'cpuUs')).toFixed(3)} |`,
      );
    }
    console.log(
      `\none console ≈ the CPU of ${Math.round((perSecondMs * 1000) / med(base, 'cpuUs'))} proxied requests per second ` +
        `(at ${med(base, 'cpuUs').toFixed(1)} µs each)`,
    );
    console.log(`\n(median of ${runs} run(s) of ${duration} each; wrk -t1 -c64, keep-alive)`);
  } finally {
    await gw.stop();
    await upstream.stop();
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
