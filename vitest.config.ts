import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    pool: 'forks',
    // two files at a time (vitest's default is one on 2 cores): most tests wait on sockets, timers
    // and child processes, so two share the cores well; the whole suite takes under 4 minutes
    maxWorkers: 2,
    testTimeout: 20_000,
    hookTimeout: 20_000,
    reporters: ['default', './test/summary-reporter.ts'],
  },
});
