#!/usr/bin/env node
// The compiled CLI (built by `npm ci` / `npm run build` into dist/): the bundle dist/gatehouse.mjs
// when the build made one (one file starts in about half the CPU time of dist/'s ~130 modules and
// their packages' ~700 files: docs/deployment.md, "Cold start"), else dist/cli/main.js (a build by
// `tsc` alone). A bundle older than the last `tsc` build (dist/.tsbuildinfo, which only a
// checkout has) is out of date, e.g. under `tsc --watch`: dist/cli/main.js runs then too.
// GATEHOUSE_BUNDLE=off runs dist/cli/main.js.
// A cluster worker holds SIGTERM/SIGINT/SIGHUP until its handlers are in place (early-signals.ts):
// loading the CLI takes a while, and a signal sent to the process group meanwhile must not end it.
import { lstatSync, statSync } from 'node:fs';
import module from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { holdSignals } from '../dist/server/early-signals.js';

holdSignals();
enableCompileCache();
const bundle = new URL('../dist/gatehouse.mjs', import.meta.url);
const { main } = useBundle() ? await import(bundle.href) : await import('../dist/cli/main.js');
await main();

function useBundle() {
  if (process.env.GATEHOUSE_BUNDLE === 'off') return false;
  const built = statSync(bundle, { throwIfNoEntry: false });
  if (!built) return false;
  const compiled = statSync(new URL('../dist/.tsbuildinfo', import.meta.url), { throwIfNoEntry: false });
  return !compiled || compiled.mtimeMs <= built.mtimeMs;
}

/**
 * V8's compile cache (Node.js 22.1 and later; Node.js 20 has none): the code compiled while
 * loading the CLI and its dependencies is kept on disk and reused by the next start, which then
 * skips most of the compiling (docs/operations.md, "Start-up time"). The directory is
 * GATEHOUSE_COMPILE_CACHE, else `gatehouse-compile-cache-<uid>` in the OS temporary directory
 * (writable in the container image: the chart mounts an emptyDir at /tmp); `off` disables it.
 * NODE_COMPILE_CACHE, Node's own setting, wins when set. The cache is code that will run: a
 * directory someone else owns or can write to is not used. A cache that cannot be used or
 * written costs nothing but the speed-up.
 */
function enableCompileCache() {
  const setting = process.env.GATEHOUSE_COMPILE_CACHE;
  if (typeof module.enableCompileCache !== 'function' || setting === 'off') return;
  if (process.env.NODE_COMPILE_CACHE) return; // Node enabled it before this ran
  const uid = process.getuid?.() ?? 0;
  const dir = setting || path.join(os.tmpdir(), `gatehouse-compile-cache-${uid}`);
  try {
    const stat = lstatSync(dir, { throwIfNoEntry: false });
    if (stat && (!stat.isDirectory() || stat.uid !== uid || (stat.mode & 0o022) !== 0)) return;
    module.enableCompileCache(dir);
  } catch {
    // no cache: a slower start, nothing else
  }
}
