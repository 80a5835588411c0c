#!/usr/bin/env node
// Where a start's time goes: runs `node --cpu-prof bin/gatehouse.js start -c CONFIG` (pinned to
// one core when there are two) until the admin /readyz answers 200, stops it with SIGTERM, and
// sums the profile's samples up to that moment by where the code came from: Node itself, each
// package under node_modules, each directory of Gatehouse's dist/, garbage collection, and the
// idle time (waiting for I/O: Redis, the key store, file reads). With GATEHOUSE_STARTUP_TIMING=1
// set for the gateway, it also prints the gateway's own phase marks (src/startup-timing.ts).
//
//   npm run build
//   node bench/startup-profile.js CONFIG [--runs N] [--keep DIR] [--no-profile]
//
// The config must have `admin` on a port the runner can reach (it reads its host and port with
// a regular expression: `admin: { host: H, port: P }` or the block form). `--keep DIR` leaves
// the .cpuprofile files there (they open in Chrome DevTools' Performance panel); `--no-profile`
// only times the starts (the profiler slows a start down by half or more) and prints the marks.
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { median } from './lib/measure.js';
import { httpGet } from './lib/net.js';
import { installCleanupHooks, spawnProcess } from './lib/proc.js';
import { fail } from './lib/settings.js';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const GATEHOUSE_DIR = path.resolve(process.env.BENCH_GATEHOUSE_DIR || path.join(BENCH_DIR, '..'));
const BIN = path.join(GATEHOUSE_DIR, 'bin', 'gatehouse.js');

/** @param {string} file */
function adminAddress(file) {
  const text = readFileSync(file, 'utf8');
  const block = /^admin:\s*(?:\{([^}]*)\}|\n((?:[ \t]+.*\n?)+))/m.exec(text);
  const body = block?.[1] ?? block?.[2] ?? '';
  const port = /port:\s*(\d+)/.exec(body)?.[1];
  const host = /host:\s*["']?([^\s,"'}]+)/.exec(body)?.[1] ?? '127.0.0.1';
  if (!port) fail(`${file}: no admin port found`);
  return { host: host === '0.0.0.0' ? '127.0.0.1' : host, port: Number(port) };
}

/**
 * Where a profile node's code lives, as a group name.
 * @param {{ functionName: string, url: string }} frame
 */
function groupOf({ functionName, url }) {
  if (url === '') {
    if (functionName === '(garbage collector)') return '(garbage collector)';
    if (functionName === '(idle)') return '(idle: waiting for I/O)';
    if (functionName === '(program)') return '(program: V8 compiling, native)';
    return `(native) ${functionName}`;
  }
  if (url.startsWith('node:')) return 'node: built-ins';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = url.slice(nm + '/node_modules/'.length).split('/');
    return `npm ${rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  const dist = url.indexOf('/dist/');
  if (dist >= 0) {
    const rest = url.slice(dist + '/dist/'.length).split('/');
    return `gatehouse ${rest.length > 1 ? rest[0] : rest.join('/')}`;
  }
  if (url.includes('/bin/')) return 'gatehouse bin';
  return url;
}

/**
 * Time per group, up to `untilUs` after the profile's start: each sample counts for the nearest
 * frame on its stack that is not Node's own code (node: built-ins, the module loader), so that
 * loading a package (resolving, reading, compiling its files, from its own `require` calls) counts
 * for that package. Samples with no such frame are the ES module loader, the garbage collector,
 * V8 compiling, or idle.
 * @param {string} file
 * @param {number} untilUs
 */
function summarise(file, untilUs) {
  /** @type {{ nodes: Array<{ id: number, callFrame: { functionName: string, url: string }, children?: number[] }>, samples: number[], timeDeltas: number[] }} */
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  /** @type {Map<number, number>} */
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  /** @type {Map<number, string>} */
  const memo = new Map();
  /** @param {number} id @returns {string} */
  const groupFor = (id) => {
    const known = memo.get(id);
    if (known !== undefined) return known;
    const frame = /** @type {{ callFrame: { functionName: string, url: string } }} */ (byId.get(id))
      .callFrame;
    let g;
    if (frame.url !== '' && !frame.url.startsWith('node:')) g = groupOf(frame);
    else {
      const up = parent.get(id);
      g =
        up === undefined || byId.get(up)?.callFrame.functionName === '(root)' ? groupOf(frame) : groupFor(up);
      if (g === 'node: built-ins' || g.startsWith('(native)')) g = '(ES module loader, Node internals)';
    }
    memo.set(id, g);
    return g;
  };
  /** @type {Map<string, number>} */
  const us = new Map();
  let t = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0;
    t += dt;
    if (t > untilUs) break;
    const g = groupFor(/** @type {number} */ (profile.samples[i]));
    us.set(g, (us.get(g) ?? 0) + dt);
  }
  return us;
}

async function main() {
  const args = process.argv.slice(2);
  const config = args.find((a, i) => !a.startsWith('--') && !args[i - 1]?.startsWith('--'));
  if (!config) fail('usage: node bench/startup-profile.js CONFIG [--runs N] [--keep DIR]');
  const runsAt = args.indexOf('--runs');
  const runs = runsAt >= 0 ? Number(args[runsAt + 1]) : 3;
  const keepAt = args.indexOf('--keep');
  const keep = keepAt >= 0 ? path.resolve(String(args[keepAt + 1])) : null;
  const profiling = !args.includes('--no-profile');
  const admin = adminAddress(config);
  const cpu = os.availableParallelism() >= 2 ? 1 : null;
  installCleanupHooks();

  /** @type {Array<Map<string, number>>} */
  const profiles = [];
  /** @type {number[]} */
  const readies = [];
  /** @type {string[]} */
  let marks = [];
  for (let run = 0; run < runs; run++) {
    const dir = keep ?? mkdtempSync(path.join(os.tmpdir(), 'gatehouse-startup-profile-'));
    const before = new Set(keep ? readdirSync(dir) : []);
    const t0 = process.hrtime.bigint();
    const proc = spawnProcess({
      name: 'gatehouse',
      cmd: process.execPath,
      args: [
        ...(profiling ? ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-interval', '250'] : []),
        BIN,
        'start',
        '-c',
        config,
      ],
      cpu,
      cwd: GATEHOUSE_DIR,
      env: { LOG_LEVEL: 'warn', GATEHOUSE_STARTUP_TIMING: '1' },
    });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (!proc.running()) fail(`gatehouse exited before ready:\n${proc.output()}`);
      if (Date.now() > deadline) {
        await proc.stop();
        fail(`gatehouse not ready within 30 s:\n${proc.output()}`);
      }
      const res = await httpGet(`http://${admin.host}:${admin.port}/readyz`, { timeoutMs: 1000 }).catch(
        () => null,
      );
      if (res?.status === 200) break;
      await sleep(2);
    }
    const readyMs = Number(process.hrtime.bigint() - t0) / 1e6;
    await proc.stop();
    const { code } = await proc.exited;
    if (code !== 0) fail(`gatehouse exited ${code} after SIGTERM:\n${proc.output()}`);
    marks = proc
      .output()
      .split('\n')
      .filter((l) => l.startsWith('gatehouse startup:'));
    readies.push(readyMs);
    if (profiling) {
      const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile') && !before.has(f));
      if (!file) fail(`no profile written in ${dir}`);
      // the profile starts when Node starts running JavaScript, a few ms after exec: counting up
      // to the ready time seen here overshoots a little, into what happened after ready (idle)
      profiles.push(summarise(path.join(dir, file), readyMs * 1000));
    }
    if (!keep) rmSync(dir, { recursive: true, force: true });
  }

  const groups = new Set(profiles.flatMap((p) => [...p.keys()]));
  const rows = [...groups]
    .map((g) => ({ g, ms: median(profiles.map((p) => (p.get(g) ?? 0) / 1000)) }))
    .sort((a, b) => b.ms - a.ms);
  console.log(
    `node ${process.version}; ${runs} starts${profiling ? ' with --cpu-prof (which slows them down)' : ''}; exec → /readyz 200: ` +
      `median ${median(readies).toFixed(0)} ms (${readies.map((r) => r.toFixed(0)).join(', ')})\n`,
  );
  if (profiling) {
    console.log('| where (time under the nearest non-Node frame, sampled) | ms (median) |');
    console.log('| ------------------------------------------------------ | ----------: |');
    for (const { g, ms } of rows) if (ms >= 1) console.log(`| ${g} | ${ms.toFixed(1)} |`);
  }
  if (marks.length > 0)
    console.log(`\nphases of the last start (GATEHOUSE_STARTUP_TIMING=1):\n${marks.join('\n')}`);
}

main().catch((err) => {
  console.error(`bench: ${err instanceof Error ? (err.stack ?? err.message) : err}`);
  process.exit(1);
});
