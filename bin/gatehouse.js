#!/usr/bin/env node
// The compiled CLI (built by `npm ci` / `npm run build` into dist/).
// A cluster worker holds SIGTERM/SIGINT/SIGHUP until its handlers are in place (early-signals.ts):
// loading the CLI takes a while, and a signal sent to the process group meanwhile must not end it.
import { holdSignals } from '../dist/cli/early-signals.js';

holdSignals();
const { main } = await import('../dist/cli/main.js');
await main();
