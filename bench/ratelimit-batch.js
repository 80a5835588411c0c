#!/usr/bin/env node
// Redis round trips per request and the CPU cost of a Redis rate limit against plain proxying,
// at 64 keep-alive connections, on a private redis-server (so other clients of a shared Redis
// neither add to its command counts nor compete with it unseen).
//
//   node bench/ratelimit-batch.js [other-checkout ...]
//
// Variants run in interleaved rounds (plain, limited, plain, limited, ...). CPU per request is
// the gateway's process group's utime + stime (/proc) over a wrk run divided by the requests
// wrk completed: steadier than rps on a shared machine. Each extra checkout (built) adds a
// "limited" row of its own, e.g. the base branch, for a before/after. Env: BENCH_ROUNDS (3),
// BENCH_DURATION (5s).
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { clockTicks, groupTicks, ticksBetween } from './lib/cpu.js';
import { startGatehouse } from './lib/gatehouse.js';
import { median } from './lib/measure.js';
import { startNginx, UPSTREAM_BODY } from './lib/nginx.js';
import { installCleanupHooks, pinSelf } from './lib/proc.js';
import { startRedis } from './lib/redis.js';
import { withRateLimit } from './lib/stages.js';
import { runWrk } from './lib/wrk.js';

const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
const duration = process.env.BENCH_DURATION ?? '5s';
const HZ = clockTicks();

/** utime + stime of every process in group `pgid`, µs */
function groupCpuUs(pgid) {
  return ticksBetween(new Map(), groupTicks(pgid)) * (1e6 / HZ);
}

function redisCli(port, ...args) {
  return spawnSync('redis-cli', ['-p', String(port), ...args]).stdout.toString();
}

function scriptCalls(port) {
  const info = redisCli(port, 'info', 'commandstats');
  const n = (c) => Number(new RegExp(`^cmdstat_${c}:calls=(\\d+)`, 'm').exec(info)?.[1] ?? 0);
  return n('evalsha') + n('eval');
}

async function main() {
  installCleanupHooks();
  const [loadCpu, sutCpu] = os.availableParallelism() >= 2 ? [0, 1] : [null, null];
  if (loadCpu !== null) pinSelf(loadCpu);
  // Redis shares the load generator's core: its own CPU is not charged to the gateway
  const redis = await startRedis({ cpu: loadCpu });
  const redisPort = redis.port;
  try {
    const upstream = await startNginx({ name: 'upstream', body: UPSTREAM_BODY, cpu: loadCpu });
    const limited = (c, store = 'redis') =>
      withRateLimit(c, { redisUrl: store === 'redis' ? redis.url : null, keyPrefix: 'bench:' });
    const checkouts = [REPO_DIR, ...process.argv.slice(2).map((p) => path.resolve(p))];
    const variants = [
      { name: 'plain', repoDir: REPO_DIR, configure: (c) => c },
      { name: 'memory limit', repoDir: REPO_DIR, configure: (c) => limited(c, 'memory') },
      ...checkouts.map((repoDir, i) => ({
        name: i === 0 ? 'redis limit' : `redis limit (${path.basename(repoDir)})`,
        repoDir,
        configure: limited,
      })),
    ];
    const gws = [];
    for (const v of variants)
      gws.push(
        await startGatehouse({
          repoDir: v.repoDir,
          upstreamUrl: upstream.url,
          cpu: sutCpu,
          configure: v.configure,
        }),
      );
    const results = variants.map(() => ({ cpu: [], rps: [], trips: [], errors: 0 }));
    for (const gw of gws)
      await runWrk({ url: gw.url, duration: '2s', threads: 1, connections: 64, cpu: loadCpu, headers: {} });
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < variants.length; i++) {
        const gw = gws[i];
        const cpu0 = groupCpuUs(gw.proc.child.pid);
        const calls0 = scriptCalls(redisPort);
        const run = await runWrk({
          url: gw.url,
          duration,
          threads: 1,
          connections: 64,
          cpu: loadCpu,
          headers: {},
        });
        const calls = scriptCalls(redisPort) - calls0;
        const cpu = groupCpuUs(gw.proc.child.pid) - cpu0;
        results[i].cpu.push(cpu / run.requests);
        results[i].rps.push(run.rps);
        results[i].trips.push(calls / run.requests);
        results[i].errors += run.errorCount;
      }
    }
    variants.forEach((v, i) => {
      if (results[i].errors > 0)
        console.log(
          `${v.name}: last log lines\n${gws[i].proc.output().trim().split('\n').slice(-3).join('\n')}`,
        );
    });
    for (const gw of gws) await gw.stop();
    await upstream.stop();
    const base = median(results[0].cpu);
    console.log('\n| variant | CPU µs/request | vs plain | rps | Redis round trips/request | errors |');
    console.log('|---|---:|---:|---:|---:|---:|');
    variants.forEach((v, i) => {
      const cpu = median(results[i].cpu);
      console.log(
        `| ${v.name} | ${cpu.toFixed(1)} | ${i === 0 ? '' : `+${(((cpu - base) / base) * 100).toFixed(0)} %`} | ` +
          `${Math.round(median(results[i].rps))} | ${v.configure === limited ? median(results[i].trips).toFixed(3) : ''} | ${results[i].errors} |`,
      );
    });
    console.log(`\n${rounds} interleaved rounds of ${duration}, wrk -t1 -c64 keep-alive, medians.`);
  } finally {
    await redis.stop();
  }
}

main().catch((err) => {
  console.error(`bench: ${err instanceof Error ? (err.stack ?? err.message) : err}`);
  process.exit(1);
});
