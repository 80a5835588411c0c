#!/usr/bin/env node
// The in-memory rate-limit store's cost per decision (`consumeSync`), bounded as configured
// (rateLimit.memory.maxEntries, least recently used evicted) at the default and at a bound the
// working set never reaches, for a working set that fits and for a flood of distinct subjects
// that evicts on every call; and the heap one subject takes. Runs on dist/ (npm run build first); no servers.
//
//   node --expose-gc bench/memory-store.js      (BENCH_CALLS, default 1 000 000 per measurement)
//
// Each measurement is repeated 5 times, alternating the variants; the median of the CPU time per
// decision is printed.
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { MemoryStore, DEFAULT_MAX_ENTRIES } = await import(
  pathToFileURL(path.join(REPO_DIR, 'dist/ratelimit/memory-store.js')).href
);

const CALLS = Number(process.env.BENCH_CALLS ?? 1_000_000);
const ROUNDS = 5;
/** a tier with two limits and a monthly quota, far above what the run reaches: all admitted */
const plan = {
  tier: 'pro',
  limits: [
    { requests: 1e9, windowMs: 1000, name: '1s' },
    { requests: 1e9, windowMs: 60_000, name: '1m' },
  ],
  quota: { requests: 1e9, per: 'month' },
};
const key = (i) => `gh:{rl:pro:ip:2001:db8:85a3::${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}}`;
const loads = {
  '10 000 subjects (fit)': Array.from({ length: 10_000 }, (_, i) => key(i)),
  '400 000 subjects, cycled (evicts on every call when bounded)': Array.from({ length: 400_000 }, (_, i) =>
    key(i),
  ),
};
const variants = {
  [`bounded, maxEntries ${DEFAULT_MAX_ENTRIES}`]: () =>
    new MemoryStore(Date.now, { maxEntries: DEFAULT_MAX_ENTRIES }),
  'maxEntries 1 000 000 (never evicts here)': () => new MemoryStore(Date.now, { maxEntries: 1_000_000 }),
};

const results = new Map();
for (let round = 0; round < ROUNDS; round++) {
  for (const [load, keys] of Object.entries(loads)) {
    for (const [variant, make] of Object.entries(variants)) {
      const store = make();
      for (let i = 0; i < keys.length; i++) store.consumeSync(keys[i], plan); // fill, warm up
      // CPU time, not wall time: on a shared machine waiting for a core is not the store's cost
      const start = process.cpuUsage();
      for (let i = 0; i < CALLS; i++) store.consumeSync(keys[i % keys.length], plan);
      const used = process.cpuUsage(start);
      const ns = ((used.user + used.system) * 1000) / CALLS;
      const id = `${load} | ${variant}`;
      results.set(id, [...(results.get(id) ?? []), { ns, size: store.size, evictions: store.evictions }]);
      await store.close();
    }
  }
}

console.log('| working set | store | CPU ns per decision (median of 5) | entries kept | evictions |');
console.log('| --- | --- | --- | --- | --- |');
for (const [id, runs] of results) {
  const sorted = [...runs].sort((a, b) => a.ns - b.ns);
  const median = sorted[Math.floor(sorted.length / 2)];
  const [load, variant] = id.split(' | ');
  console.log(`| ${load} | ${variant} | ${median.ns.toFixed(0)} | ${median.size} | ${median.evictions} |`);
}

if (typeof globalThis.gc === 'function') {
  const n = 100_000;
  globalThis.gc();
  const before = process.memoryUsage().heapUsed;
  const store = new MemoryStore(Date.now, { maxEntries: n });
  for (let i = 0; i < n; i++) store.consumeSync(key(i), plan);
  globalThis.gc();
  const bytes = (process.memoryUsage().heapUsed - before) / n;
  console.log(`\nheap per subject (two limits and a quota, key included): ${bytes.toFixed(0)} bytes`);
  await store.close();
} else {
  console.log('\n(run with node --expose-gc for the heap per subject)');
}
