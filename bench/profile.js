#!/usr/bin/env node
// CPU per proxied request of Gatehouse (plain route, no stages) and of the 40-line undici peer,
// and where Gatehouse's time goes. Each system runs pinned to CPU 1, wrk and the nginx upstream
// share CPU 0; one keep-alive wrk run (64 connections) per system and round, after a short
// warm-up, and the system's process group's utime + stime (/proc) over the run divided by the
// requests wrk completed. Systems alternate within a round (A B A B ...), so drift hits both.
//
//   npm run build
//   node bench/profile.js [--rounds 3] [--duration 10s] [--systems gatehouse,undici-naive]
//                         [--profile DIR] [--top 25]
//
// A system `gatehouse@DIR` is the build in another checkout DIR (e.g. the base of a change, built).
//
// --profile DIR: after the measured rounds, one more run per system under `node --cpu-prof`
// (the profiler costs CPU of its own: those runs are not measured), the .cpuprofile files left in
// DIR, and a summary of each printed: self time by function (top N) and by module (Gatehouse's
// bundle's source files one by one, each npm package's files, Node's built-ins, GC, native
// code). --summarise DIR only prints the summary of the .cpuprofile files already in DIR.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { groupCpuUs } from './lib/cpu.js';
import { startGatehouse } from './lib/gatehouse.js';
import { median } from './lib/measure.js';
import { freePort, waitForPort } from './lib/net.js';
import { startNginx } from './lib/nginx.js';
import { installCleanupHooks, pinSelf, spawnProcess, which } from './lib/proc.js';
import { fail } from './lib/settings.js';
import { runWrk } from './lib/wrk.js';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const REPO_DIR = path.resolve(BENCH_DIR, '..');
const SYSTEM_CPU = 1;
const LOAD_CPU = 0;

const { values: opts } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '10s' },
    systems: { type: 'string', default: 'gatehouse,undici-naive' },
    profile: { type: 'string' },
    top: { type: 'string', default: '25' },
    summarise: { type: 'string' },
  },
});

/**
 * Starts one system pinned to SYSTEM_CPU, under the profiler when `profileDir` is set.
 * @param {string} system
 * @param {string} upstreamUrl
 * @param {string | null} profileDir
 * @returns {Promise<{ url: string, pgid: number, stop: () => Promise<void> }>}
 */
async function start(system, upstreamUrl, profileDir) {
  const nodeArgs = profileDir === null ? [] : ['--cpu-prof', `--cpu-prof-dir=${profileDir}`];
  if (system === 'gatehouse' || system.startsWith('gatehouse@')) {
    const gw = await startGatehouse({
      repoDir: system === 'gatehouse' ? REPO_DIR : path.resolve(system.slice('gatehouse@'.length)),
      upstreamUrl,
      cpu: SYSTEM_CPU,
      nodeArgs,
    });
    return { url: `${gw.url}x`, pgid: /** @type {number} */ (gw.proc.child.pid), stop: gw.stop };
  }
  if (system !== 'undici-naive') fail(`unknown system ${system}: gatehouse or undici-naive`);
  const port = await freePort();
  const proc = spawnProcess({
    name: system,
    cmd: process.execPath,
    args: [
      ...nodeArgs,
      path.join(BENCH_DIR, 'peers', 'undici-naive.js'),
      '--port',
      String(port),
      '--target',
      upstreamUrl.replace(/\/$/, ''),
    ],
    cpu: SYSTEM_CPU,
  });
  await waitForPort(port, { isAlive: proc.running, what: system });
  return {
    url: `http://127.0.0.1:${port}/x`,
    pgid: /** @type {number} */ (proc.child.pid),
    stop: () => proc.stop(),
  };
}

/**
 * One warm-up and one measured wrk run against a started system: µs of CPU per request.
 * @param {{ url: string, pgid: number }} sys
 */
async function cpuPerRequest(sys) {
  const warmup = await runWrk({ url: sys.url, duration: '2s', cpu: LOAD_CPU });
  const before = groupCpuUs(sys.pgid);
  const run = await runWrk({ url: sys.url, duration: opts.duration, cpu: LOAD_CPU });
  const used = groupCpuUs(sys.pgid) - before;
  return {
    us: used / Math.max(1, run.requests),
    rps: run.rps,
    errors: run.errorCount,
    requests: warmup.requests + run.requests,
  };
}

/** @type {Map<string, Array<[number, string]>>} */
const bundleMaps = new Map();

/**
 * The source files a bundle is made of, by first line: the bundler writes a `// path` comment
 * before each module's code.
 * @param {string} file
 */
function bundleMap(file) {
  let map = bundleMaps.get(file);
  if (map === undefined) {
    map = [];
    const lines = readFileSync(file, 'utf8').split('\n');
    for (let i = 0; i < lines.length; i++) {
      const m = /^\/\/ (\S+\.[cm]?[jt]s)$/.exec(/** @type {string} */ (lines[i]));
      if (m) map.push([i, /** @type {string} */ (m[1])]);
    }
    bundleMaps.set(file, map);
  }
  return map;
}

/**
 * Where a path of code is: an npm package (and its file), a source file of Gatehouse.
 * @param {string} file
 */
function sourceName(file) {
  const nm = file.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = file.slice(nm + 'node_modules/'.length).split('/');
    const scoped = rest[0]?.startsWith('@');
    return `npm ${rest.slice(0, scoped ? 2 : 1).join('/')} ${rest.slice(scoped ? 2 : 1).join('/')}`;
  }
  const src = file.lastIndexOf('src/');
  return `gatehouse ${src >= 0 ? file.slice(src) : file}`;
}

/**
 * Where a profile frame's code lives: a source file of Gatehouse (found in the bundle), an npm
 * package's file, a node built-in, native code.
 * @param {{ functionName: string, url: string, lineNumber: number }} frame
 */
function moduleOf({ functionName, url, lineNumber }) {
  if (url === '') return functionName.startsWith('(') ? functionName : `(native) ${functionName}`;
  if (url.startsWith('node:')) return url;
  const file = url.startsWith('file://') ? fileURLToPath(url) : url;
  if (file.endsWith('.mjs') && file.includes('/dist/')) {
    let found = 'bundle';
    for (const [line, name] of bundleMap(file)) {
      if (line > lineNumber) break;
      found = name;
    }
    return sourceName(found);
  }
  if (file.includes('/node_modules/')) return sourceName(file);
  return path.basename(file);
}

/**
 * Self time by function and by module of one .cpuprofile (idle time left out), as a share of the
 * busy time and in µs per request when `requests` (served while profiled) is known.
 * @param {string} file
 * @param {number} top
 * @param {number} requests
 */
function summarise(file, top, requests) {
  /** @type {{ nodes: Array<{ id: number, callFrame: { functionName: string, url: string, lineNumber: number } }>, samples: number[], timeDeltas: number[] }} */
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  /** @type {Map<string, number>} */
  const byFunction = new Map();
  /** @type {Map<string, number>} */
  const byModule = new Map();
  let busy = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const frame = byId.get(/** @type {number} */ (profile.samples[i]))?.callFrame;
    const dt = profile.timeDeltas[i + 1] ?? 0; // a sample's time is the gap to the next one
    if (frame === undefined || frame.functionName === '(idle)') continue;
    busy += dt;
    const mod = moduleOf(frame);
    const fn = `${frame.functionName || '(anonymous)'} ${mod}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + dt);
    byModule.set(mod, (byModule.get(mod) ?? 0) + dt);
  }
  const rows = (/** @type {Map<string, number>} */ m) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, v]) => {
        const each = requests > 0 ? `${(v / requests).toFixed(2).padStart(6)} µs  ` : '';
        return `  ${((100 * v) / busy).toFixed(1).padStart(5)} %  ${each}${k}`;
      })
      .join('\n');
  const perRequest = requests > 0 ? `, ${requests} requests: ${(busy / requests).toFixed(1)} µs each` : '';
  console.log(`${path.basename(file)}: ${(busy / 1e6).toFixed(2)} s busy${perRequest}`);
  console.log(`self time by function (top ${top}):\n${rows(byFunction)}`);
  console.log(`self time by module (top ${top}):\n${rows(byModule)}`);
}

/**
 * The summaries of a directory's .cpuprofile files (and the request count profile runs leave there).
 * @param {string} dir
 */
function summariseDir(dir) {
  const count = path.join(dir, 'requests');
  const requests = existsSync(count) ? Number(readFileSync(count, 'utf8')) : 0;
  for (const f of readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')))
    summarise(path.join(dir, f), Number(opts.top), requests);
}

async function main() {
  if (opts.summarise !== undefined) {
    summariseDir(opts.summarise);
    return;
  }
  if (!which('nginx') || !which('wrk'))
    fail('nginx and wrk are needed: node bench/run.js direct installs them');
  installCleanupHooks();
  pinSelf(LOAD_CPU);
  const systems = opts.systems.split(',');
  const rounds = Number(opts.rounds);
  const upstream = await startNginx({ name: 'upstream', cpu: LOAD_CPU });
  /** @type {Map<string, number[]>} */
  const us = new Map(systems.map((s) => [s, []]));
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const system of systems) {
        const sys = await start(system, upstream.url, null);
        try {
          const r = await cpuPerRequest(sys);
          us.get(system)?.push(r.us);
          const errors = r.errors;
          console.log(
            `round ${round} ${system}: ${r.us.toFixed(1)} µs CPU/request, ${Math.round(r.rps)} rps${errors ? `, ${errors} errors` : ''}`,
          );
        } finally {
          await sys.stop();
        }
      }
    }
    for (const [system, values] of us)
      console.log(
        `${system}: median ${median(values).toFixed(1)} µs CPU/request (${values.map((v) => v.toFixed(1)).join(', ')})`,
      );
    if (opts.profile !== undefined) {
      for (const system of systems) {
        const dir = path.resolve(opts.profile, system.replace(/[^\w.-]+/g, '_'));
        mkdirSync(dir, { recursive: true });
        const sys = await start(system, upstream.url, dir);
        try {
          const r = await cpuPerRequest(sys);
          writeFileSync(path.join(dir, 'requests'), String(r.requests));
        } finally {
          await sys.stop();
        }
        summariseDir(dir);
      }
    }
  } finally {
    await upstream.stop();
  }
}

await main();
