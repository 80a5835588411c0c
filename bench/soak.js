#!/usr/bin/env node
// The soak: mixed traffic through one real Gatehouse process with every stage on (JWT + RBAC, API
// keys in SQLite, a Redis sliding-window limit, the access log shipped to a `_bulk` sink, tracing
// sampled, metrics), some 4xx and 5xx, a Redis restart and an upstream kill in the middle; then
// the accounting invariants and the flatness of RSS and open sockets in the second half are
// asserted. Exit 0: every check passed; 1: a check failed (listed); 2: setup problem. See README.md.
//
//   node bench/soak.js      Env: BENCH_SOAK_DURATION (10m), BENCH_SOAK_RATE (2000 requests/s,
//                           0 = unpaced), BENCH_SOAK_CONNECTIONS (32), BENCH_GATEHOUSE_DIR (..)
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { startFakeSink, sumOf } from './lib/fake-sinks.js';
import { startGatehouse } from './lib/gatehouse.js';
import { httpGet } from './lib/net.js';
import { createApiKey, fullPipelineConfig, jwtFixture, scrape, startUpstream } from './lib/pipeline.js';
import { childrenOf, rssMb, socketCount } from './lib/proc-stats.js';
import { installCleanupHooks, makeTempDir, pinSelf, runSync } from './lib/proc.js';
import { startPrivateRedis } from './lib/redis-server.js';
import {
  accessLogAccounting,
  accountingChecks,
  flatness,
  floors,
  gatewayRequests,
} from './lib/soak-checks.js';
import { startLoad } from './lib/soak-load.js';
import { envNumber, fail, giveUpAfter } from './lib/settings.js';
import { parseDurationS } from './lib/wrk.js';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const GATEHOUSE_DIR = path.resolve(process.env.BENCH_GATEHOUSE_DIR || path.join(BENCH_DIR, '..'));
/** Distinct JWT subjects: the token cache and the limiter see several consumers. */
const TOKENS = 64;
/** Requests per second the tight route admits (per client address: all of the soak is one). */
const TIGHT_LIMIT = 20;
/** How long the private Redis stays down. */
const REDIS_DOWN_S = 5;
/** After the Redis start or the upstream kill, the gateway has this long to recover. */
const RECOVERY_S = 10;
/** The route timeout of the slow upstream path (which answers after 2 s): 504 */
const SLOW_TIMEOUT = '200ms';

/** @param {string} name */
function durationEnv(name, fallback) {
  try {
    return parseDurationS(process.env[name] || fallback);
  } catch (err) {
    return fail(`${name}: ${err instanceof Error ? err.message : err}`);
  }
}

const DURATION_S = durationEnv('BENCH_SOAK_DURATION', '10m');
if (DURATION_S < 40) fail('BENCH_SOAK_DURATION must be 40s or more (the faults need room)');
const RATE = process.env.BENCH_SOAK_RATE === '0' ? 0 : envNumber('BENCH_SOAK_RATE', 2000);
const CONNECTIONS = envNumber('BENCH_SOAK_CONNECTIONS', 32, { integer: true });
/** a sample every 5 s on the 10-minute soak (120 samples), more often on a short one */
const SAMPLE_MS = Math.round(Math.min(5000, Math.max(1000, (DURATION_S * 1000) / 120)));
/** When the faults happen (seconds from the start of the load): both before the second half, so
 * the second half, where flatness is judged, is the steady state after recovery. */
const REDIS_STOP_AT = Math.round(DURATION_S * 0.25);
const KILL_AT = Math.round(DURATION_S * 0.35);

/** Calls of the rate-limit script on a Redis (EVALSHA and EVAL), from INFO commandstats. */
function scriptCalls(/** @type {number} */ port) {
  const out = runSync('redis-cli', ['-p', String(port), 'info', 'commandstats']).output;
  let calls = 0;
  for (const m of out.matchAll(/^cmdstat_(evalsha|eval|evalsha_ro|eval_ro|fcall):calls=(\d+)/gm))
    calls += Number(m[2]);
  return calls;
}

/**
 * Requests per second in each minute of the load, from the per-second timeline.
 * @param {Map<number, Record<string, Record<string, number>>>} seconds
 */
function perMinute(seconds) {
  /** @type {number[]} */
  const minutes = [];
  for (const [sec, byKind] of seconds) {
    const m = Math.floor(sec / 60);
    for (const byClass of Object.values(byKind))
      for (const n of Object.values(byClass)) minutes[m] = (minutes[m] ?? 0) + n;
  }
  return Array.from(minutes, (n) => Math.round((n ?? 0) / 60));
}

/** @param {number} n */
const int = (n) => Math.round(n).toLocaleString('en-US');
/** @param {number} n @param {number} [d] */
const fix = (n, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : String(n));

async function main() {
  installCleanupHooks();
  giveUpAfter(DURATION_S + 180);
  const [loadCpu, sutCpu] = os.availableParallelism() >= 2 ? [0, 1] : [null, null];
  if (loadCpu !== null) pinSelf(loadCpu);
  const dir = makeTempDir('gatehouse-bench-soak-');
  const startedAt = new Date();
  console.log(
    `soak: ${DURATION_S} s, ${CONNECTIONS} connections, ${RATE ? `${RATE} requests/s` : 'unpaced'}, ` +
      `a sample every ${SAMPLE_MS / 1000} s; Redis down at ${REDIS_STOP_AT} s for ${REDIS_DOWN_S} s, ` +
      `upstream b killed at ${KILL_AT} s`,
  );

  const { pem, tokens } = jwtFixture(dir, TOKENS);
  const redis = await startPrivateRedis({ cpu: loadCpu });
  const es = await startFakeSink({ kind: 'elasticsearch', cpu: loadCpu });
  const otlp = await startFakeSink({ kind: 'otlp', cpu: loadCpu });
  const a = await startUpstream('a', loadCpu);
  const b = await startUpstream('b', loadCpu);
  const c = await startUpstream('c', loadCpu);

  const dbFile = path.join(dir, 'keys.db');
  const apiKey = createApiKey({ repoDir: GATEHOUSE_DIR, dir, dbFile });
  const gw = await startGatehouse({
    repoDir: GATEHOUSE_DIR,
    upstreamUrl: a.url,
    cpu: sutCpu,
    configure: (base) =>
      fullPipelineConfig({
        base,
        pem,
        dbFile,
        redisUrl: redis.url,
        esUrl: es.url,
        otlpUrl: otlp.url,
        keyPrefix: `soak:${process.pid}:`,
        // on a shared, busy machine Redis answers late at times: past the default 50 ms the limiter
        // would count locally then, and the soak could not tell the restart's degradation from it
        redisTimeout: '1s',
        services: {
          app: { targets: [a.url, b.url], pool: { connections: 32 } },
          // answers 500/502 and times out on purpose: no ejection, no breaker, no retry, so each
          // of those requests reaches the client as the 5xx it is
          flaky: {
            targets: [c.url],
            passiveHealth: { consecutiveErrors: 0 },
            circuitBreaker: { enabled: false },
            retry: { attempts: 1 },
          },
        },
        extraRoutes: [
          {
            name: 'admin',
            match: { path: '/api/admin/**' },
            service: 'app',
            auth: ['jwt', 'apiKey'],
            permissions: ['admin:write'],
          },
          {
            name: 'tight',
            match: { path: '/api/tight/**' },
            service: 'app',
            rateLimit: { key: 'ip', limits: [{ requests: TIGHT_LIMIT, per: '1s' }] },
          },
          {
            name: 'flaky',
            match: { path: '/api/flaky/**' },
            service: 'flaky',
            auth: ['jwt'],
            timeouts: { response: SLOW_TIMEOUT },
          },
        ],
      }),
  });
  const pid = /** @type {number} */ (gw.proc.child.pid);
  const kids = childrenOf(pid);
  // workers: 1 serves in the process itself; were there a forked worker, it would be the one to watch
  const watched = kids.length === 1 ? /** @type {number} */ (kids[0]) : pid;
  console.log(
    `gatehouse pid ${pid}${watched !== pid ? ` (worker ${watched})` : ''}, ${gw.url}, admin ${gw.adminUrl}`,
  );
  const origin = gw.url.replace(/\/$/, '');

  // the JWT kinds cycle through the tokens
  const tokenHeaders = tokens.map((tk) => ({ authorization: `Bearer ${tk}` }));
  const jwt = (/** @type {number} */ i) => /** @type {Record<string, string>} */ (tokenHeaders[i % TOKENS]);
  const keyHeaders = { 'x-api-key': apiKey };
  const badKey = { 'x-api-key': 'gh_notakey0000000000000000000000000000' };
  const none = {};
  /** @type {import('./lib/soak-load.js').Kind[]} */
  const kinds = [
    { name: 'jwt 200', weight: 40, method: 'GET', path: (i) => `/api/data/items/${i % 1000}`, headers: jwt },
    {
      name: 'key 200',
      weight: 18,
      method: 'GET',
      path: (i) => `/api/data/keys/${i % 100}`,
      headers: () => keyHeaders,
    },
    {
      name: 'post 200',
      weight: 5,
      method: 'POST',
      path: () => '/api/data/items',
      headers: (i) => ({ ...jwt(i), 'content-type': 'application/json' }),
      body: '{"name":"soak","qty":1}',
    },
    { name: 'no token 401', weight: 4, method: 'GET', path: () => '/api/data/items/1', headers: () => none },
    { name: 'bad key 401', weight: 4, method: 'GET', path: () => '/api/data/items/1', headers: () => badKey },
    { name: 'forbidden 403', weight: 4, method: 'GET', path: () => '/api/admin/users', headers: jwt },
    { name: 'tight 200/429', weight: 8, method: 'GET', path: () => '/api/tight/x', headers: () => none },
    {
      name: 'no route 404',
      weight: 4,
      method: 'GET',
      path: (i) => `/nowhere/${i % 10}`,
      headers: () => none,
    },
    { name: 'upstream 500', weight: 3, method: 'GET', path: () => '/api/flaky/status/500', headers: jwt },
    { name: 'upstream 502', weight: 3, method: 'GET', path: () => '/api/flaky/status/502', headers: jwt },
    { name: 'timeout 504', weight: 1, method: 'GET', path: () => '/api/flaky/slow', headers: jwt },
  ];

  /** @type {{ t: number, rss: number, sockets: number }[]} */
  const samples = [];
  /** @type {string[]} */
  const events = [];
  const load = startLoad({ origin, kinds, connections: CONNECTIONS, rate: RATE, seed: 16 });
  const t = () => (performance.now() - load.started) / 1000;
  const event = (/** @type {string} */ what) => {
    events.push(`${fix(t())} s  ${what}`);
    console.log(`[${fix(t())} s] ${what}`);
  };
  const sampler = setInterval(() => {
    const rss = rssMb(watched);
    const sockets = socketCount(watched);
    if (rss !== null && sockets !== null) samples.push({ t: t(), rss, sockets });
  }, SAMPLE_MS);
  const progress = setInterval(() => {
    const last = samples[samples.length - 1];
    console.log(
      `[${fix(t(), 0)} s] sent ${int(load.counts.sent)}, received ${int(load.counts.received)}, errors ${load.counts.errors}` +
        (last ? `, rss ${fix(last.rss)} MB, sockets ${last.sockets}` : ''),
    );
  }, 30_000);

  const at = async (/** @type {number} */ s) => {
    const wait = s - t();
    if (wait > 0) await sleep(wait * 1000);
  };

  // the Redis restart
  await at(REDIS_STOP_AT);
  const before = await scrape(gw.adminUrl);
  event(`redis stopped (${scriptCalls(redis.port)} script calls so far)`);
  await redis.stop();
  await sleep(REDIS_DOWN_S * 1000);
  await redis.start();
  const redisStartedAt = t();
  event('redis started again on the same port (empty)');
  // the upstream kill: b, for good
  await at(KILL_AT);
  const aBeforeKill = (await a.requests()) ?? 0;
  b.proc.kill('SIGKILL');
  const killedAt = t();
  event('upstream b killed (SIGKILL, not restarted)');
  await at(Math.max(redisStartedAt, killedAt) + RECOVERY_S);
  const recovered = await scrape(gw.adminUrl);
  const recoveredAt = t();
  event(`recovery window over (${RECOVERY_S} s): from here on the gateway must be whole again`);

  await at(DURATION_S);
  clearInterval(progress);
  event('load stops');
  await load.stop();
  clearInterval(sampler);
  event(`every request ended (${int(load.counts.sent)} sent)`);

  // let the access log drain (buffered 0), then read every count at one moment
  const drainDeadline = Date.now() + 20_000;
  let final = await scrape(gw.adminUrl);
  while (Date.now() < drainDeadline && sumOf(final, 'gatehouse_access_log_buffered') > 0) {
    await sleep(500);
    final = await scrape(gw.adminUrl);
  }
  const sinkStats = await es.stats();
  const services = await httpGet(`${gw.adminUrl}/services`)
    .then((r) => JSON.parse(r.body))
    .catch(() => null);
  const readyz = await httpGet(`${gw.adminUrl}/readyz`).catch(() => ({ status: 0 }));
  const alive = gw.running();
  const aAfter = (await a.requests()) ?? 0;
  const callsOnNewRedis = scriptCalls(redis.port);
  const spans = await otlp.stats();

  // --- checks
  const c0 = load.counts;
  const accessLog = accessLogAccounting(final);
  const gwReq = gatewayRequests(final);
  const checks = accountingChecks({
    client: c0,
    accessLog,
    sink: 'elasticsearch',
    sinkReceived: sinkStats.items,
    gatewayRequests: gwReq.total,
  });
  const es0 = accessLog.elasticsearch;
  checks.push({
    name: 'access log: one record per request (enqueued = gatehouse_requests_total)',
    ok: es0 !== undefined && es0.enqueued === gwReq.total,
    detail: `enqueued ${es0?.enqueued} vs requests ${gwReq.total}`,
  });
  checks.push({
    name: 'gateway alive at the end',
    ok: alive,
    detail: alive ? `pid ${pid} running` : 'exited',
  });
  checks.push({
    name: 'GET /readyz = 200 at the end',
    ok: readyz.status === 200,
    detail: `status ${readyz.status}`,
  });

  // after the recovery window: per-second timeline of the client
  /** @param {string} kind @param {string} cls @param {number} from */
  const countAfter = (kind, cls, from) => {
    let n = 0;
    for (const [sec, byKind] of c0.seconds) if (sec >= Math.ceil(from)) n += byKind[kind]?.[cls] ?? 0;
    return n;
  };
  // A request the dead target refused (connect-error) is retried on the other, whatever its
  // method: nothing was sent. Only requests in flight on a connection to it when it died can fail
  // (a POST there is not retried: the target may have acted on it), and those end before recovery.
  const appKinds = ['jwt 200', 'key 200', 'post 200'];
  const bad = (/** @type {string} */ k, /** @type {number} */ from) =>
    countAfter(k, '5xx', from) + countAfter(k, 'error', from);
  const badAfter = appKinds.reduce((s, k) => s + bad(k, recoveredAt), 0);
  const badOverall = appKinds.reduce((s, k) => s + bad(k, 0), 0);
  checks.push({
    name: 'upstream kill: no 5xx or error on the app requests (GET and POST) after recovery',
    ok: badAfter === 0,
    detail: `${badAfter} after ${fix(recoveredAt)} s (${badOverall} in the whole run, ${bad('post 200', 0)} of them POSTs)`,
  });
  checks.push({
    name: 'upstream kill: the surviving target served after it',
    ok: aAfter > aBeforeKill,
    detail: `target a answered ${int(aAfter - aBeforeKill)} requests after the kill`,
  });
  const tight429After = countAfter('tight 200/429', '429', recoveredAt);
  const tight200After = countAfter('tight 200/429', '2xx', recoveredAt);
  checks.push({
    name: 'redis restart: limits decided in Redis again',
    ok: callsOnNewRedis > 0 && tight429After > 0,
    detail: `${int(callsOnNewRedis)} script calls on the restarted Redis; tight route after recovery: ${int(tight200After)} × 200, ${int(tight429After)} × 429`,
  });
  // a sliding window of TIGHT_LIMIT per second admits at most TIGHT_LIMIT × (seconds + 1) in a span
  const spanS = Math.max(0, ...c0.seconds.keys()) - Math.ceil(recoveredAt) + 1;
  checks.push({
    name: `redis restart: the tight route admits no more than ${TIGHT_LIMIT}/s after recovery`,
    ok: tight200After <= TIGHT_LIMIT * (spanS + 1),
    detail: `${int(tight200After)} × 200 in ${spanS} s (at most ${int(TIGHT_LIMIT * (spanS + 1))})`,
  });
  const degradedAtRecovery = sumOf(recovered, 'gatehouse_ratelimit_degraded_decisions_total');
  const degradedAtEnd = sumOf(final, 'gatehouse_ratelimit_degraded_decisions_total');
  const degradedBefore = sumOf(before, 'gatehouse_ratelimit_degraded_decisions_total');
  const storeErrors = sumOf(final, 'gatehouse_store_errors_total');
  checks.push({
    name: 'redis restart: no degraded decisions after recovery',
    ok: degradedAtEnd === degradedAtRecovery && sumOf(final, 'gatehouse_ratelimit_store_degraded') === 0,
    detail: `degraded decisions ${int(degradedBefore)} before, ${int(degradedAtRecovery)} at recovery, ${int(degradedAtEnd)} at the end; store errors ${int(storeErrors)}`,
  });
  checks.push({
    name: 'client: no connection errors',
    ok: c0.errors === 0,
    detail: `${c0.errors} (${JSON.stringify(c0.errorCodes)})`,
  });

  // flatness in the second half of the load
  const halfMin = DURATION_S / 2 / 60;
  // judged on the floors, the minimum of each of 10 windows (60 s on the 10-minute soak): what is
  // retained raises them, a change of load rate only moves the peaks (README.md "Soak"). Limits:
  // a trend of at most 10 MB of RSS over the second half, a tenth of the 100 MB target (2 MB/min
  // on the 10-minute soak), and 4 sockets (1 a minute)
  const windowS = DURATION_S / 10;
  const rssRule = { maxSlopePerMin: Math.max(2, 10 / halfMin), tolerance: 0.1 };
  const sockRule = { maxSlopePerMin: Math.max(1, 4 / halfMin), tolerance: 0.1, slack: 4 };
  const rssPoints = samples.map((s) => ({ t: s.t, v: s.rss }));
  const sockPoints = samples.map((s) => ({ t: s.t, v: s.sockets }));
  const rss = flatness(floors(rssPoints, windowS), rssRule);
  const sockets = flatness(floors(sockPoints, windowS), sockRule);
  // the raw samples, for the summary only
  const rssRaw = flatness(rssPoints, rssRule);
  const sockRaw = flatness(sockPoints, sockRule);
  checks.push({
    name: 'RSS flat in the second half (floors)',
    ok: rss.ok,
    detail: rss.ok ? 'yes' : rss.reasons.join('; '),
  });
  checks.push({
    name: 'open sockets flat in the second half (floors)',
    ok: sockets.ok,
    detail: sockets.ok ? 'yes' : sockets.reasons.join('; '),
  });

  // --- the summary
  const elapsed = (performance.now() - load.started) / 1000;
  const statusLine = Object.entries(c0.status)
    .sort(([x], [y]) => Number(x) - Number(y))
    .map(([s, n]) => `${s}: ${int(n)}`)
    .join(', ');
  const lines = [
    '=== soak summary ===',
    `date        ${startedAt.toISOString()}  node ${process.version}  ${os.cpus().length} CPUs`,
    `load        ${DURATION_S} s, ${CONNECTIONS} keep-alive connections, ${RATE ? `paced at ${RATE}/s` : 'unpaced'}; ${int(c0.sent)} requests (${int(c0.sent / elapsed)}/s)`,
    `responses   ${int(c0.received)} (${statusLine}); connection errors ${c0.errors}`,
    'by kind     ' +
      Object.entries(c0.kinds)
        .map(
          ([k, v]) =>
            `${k}: ${int(v.sent)} → ${Object.entries(v.status)
              .map(([s, n]) => `${s}×${int(n)}`)
              .join(' ')}${Object.keys(v.errors).length ? ` err ${JSON.stringify(v.errors)}` : ''}`,
        )
        .join('\n            '),
    `gateway     gatehouse_requests_total ${int(gwReq.total)}; access log ${Object.entries(accessLog)
      .map(
        ([s, x]) =>
          `${s}: enqueued ${int(x.enqueued)} = shipped ${int(x.shipped)} + dropped ${int(x.dropped)} + buffered ${int(x.buffered)}`,
      )
      .join(
        '; ',
      )}; sink received ${int(sinkStats.items)} in ${int(sinkStats.requests)} _bulk requests (${sinkStats.bad} bad); spans exported ${int(spans.items)}`,
    `rate/min    ${perMinute(c0.seconds).join(' ')} requests/s in each minute of the load`,
    `faults      ${events.join('\n            ')}`,
    `rss MB      samples every ${SAMPLE_MS / 1000} s: start ${fix(rssRaw.first)}, end ${fix(rssRaw.last)}, max ${fix(rssRaw.max)}; second half: median ${fix(rssRaw.median)}, slope ${fix(rssRaw.slopePerMin, 2)} MB/min`,
    `            floors (min per ${fix(windowS, 0)} s): second half slope ${fix(rss.slopePerMin, 2)} MB/min (limit ${fix(rssRule.maxSlopePerMin, 2)}); highest floor of the last quarter ${fix(rss.lastQuarterMax)} vs third ${fix(rss.thirdQuarterMax)} (limit ${fix(rss.limit)})`,
    `sockets     start ${sockRaw.first}, end ${sockRaw.last}, max ${sockRaw.max}; second half: median ${fix(sockRaw.median)}, slope ${fix(sockRaw.slopePerMin, 2)}/min`,
    `            floors: second half slope ${fix(sockets.slopePerMin, 2)}/min (limit ${fix(sockRule.maxSlopePerMin, 2)}); highest floor of the last quarter ${sockets.lastQuarterMax} vs third ${sockets.thirdQuarterMax} (limit ${fix(sockets.limit)})`,
    `upstreams   ${services ? JSON.stringify((services.services ?? []).find((/** @type {{ name: string }} */ s) => s.name === 'app')?.targets?.map((/** @type {{ target: string, healthy: boolean, ejected: boolean }} */ x) => ({ target: x.target === a.url ? 'a' : x.target === b.url ? 'b' : x.target, healthy: x.healthy, ejected: x.ejected }))) : 'n/a'}`,
    'checks',
    ...checks.map((x) => `  ${x.ok ? 'PASS' : 'FAIL'}  ${x.name}: ${x.detail}`),
  ];
  const failed = checks.filter((x) => !x.ok);
  lines.push(
    failed.length === 0
      ? `SOAK PASSED (${checks.length} checks)`
      : `SOAK FAILED: ${failed.length} of ${checks.length} checks`,
  );
  console.log(`\n${lines.join('\n')}`);
  const resultsDir = path.join(BENCH_DIR, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const resultsFile = path.join(resultsDir, `soak-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  const seconds = Object.fromEntries(c0.seconds);
  writeFileSync(
    resultsFile,
    JSON.stringify(
      {
        startedAt,
        settings: { DURATION_S, RATE, CONNECTIONS, SAMPLE_MS },
        counts: { ...c0, seconds },
        samples,
        events,
        checks,
        accessLog,
        gateway: gwReq,
        sink: sinkStats,
        spans,
      },
      null,
      1,
    ),
  );
  console.log(`(samples and counts: ${path.relative(process.cwd(), resultsFile)})`);

  await gw.stop();
  for (const p of [a, b, c]) await p.proc.stop();
  await es.stop();
  await otlp.stop();
  await redis.stop();
  process.exit(failed.length === 0 ? 0 : 1);
}

main().catch((err) => {
  console.error(`soak: ${err instanceof Error ? (err.stack ?? err.message) : err}`);
  process.exit(2);
});
