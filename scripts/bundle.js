#!/usr/bin/env node
// Bundles the compiled CLI (dist/cli/main.js and everything it imports, with the pure JavaScript
// dependencies) into one file, dist/gatehouse.mjs, which bin/gatehouse.js runs when it is there.
// Why: most of a start is Node's module loader working per file (resolving, reading, compiling
// ~800 files); one file takes roughly half the CPU time to ready (docs/deployment.md, "Cold
// start"). Runs after `tsc` (npm run build, scripts/prepare.js), on its output: the code bundled
// is the code the tests run against dist/.
//
// Left outside, loaded from node_modules when a config needs them:
// - better-sqlite3 (a native addon), pg, and the OpenTelemetry SDK and exporter (optional:
//   loaded only with `database.url`, `tracing.otlpUrl`);
// - dist/server/early-signals.js: bin/gatehouse.js loads it before the bundle, and the bundle
//   must share that one instance (the signals it held are released by the worker).
// ioredis is bundled (the full pipeline needs it before ready), still evaluated only at the first
// connection: its `createRequire(import.meta.url)('ioredis')` becomes a bundled `require`.
//
// Each module's `import.meta.url` is rewritten to the URL its file has in dist/, so that paths
// relative to it (package.json, examples/) are what they are when dist/ runs unbundled.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
const outfile = path.join(dist, 'gatehouse.mjs');
const earlySignals = path.join(dist, 'server', 'early-signals.js');

const EXTERNAL = [
  'better-sqlite3',
  'pg',
  'pg-native',
  '@opentelemetry/sdk-trace-base',
  '@opentelemetry/exporter-trace-otlp-http',
  '@opentelemetry/resources',
];

// undici's index loads all of undici (fetch, WebSocket, cookies, mocks, caches: ~15–25 ms of a
// start); Gatehouse imports only these, so the bundle gets them, with what the index does to
// them (the request/stream/... methods on every dispatcher). A new name imported from 'undici'
// fails the build here rather than being undefined at run time.
const UNDICI = ['Client', 'Pool', 'errors'];
const undiciDir = path.join(root, 'node_modules', 'undici');
const undiciShim = `
const Dispatcher = require(${JSON.stringify(path.join(undiciDir, 'lib/dispatcher/dispatcher.js'))});
Object.assign(Dispatcher.prototype, require(${JSON.stringify(path.join(undiciDir, 'lib/api/index.js'))}));
module.exports.Client = require(${JSON.stringify(path.join(undiciDir, 'lib/dispatcher/client.js'))});
module.exports.Pool = require(${JSON.stringify(path.join(undiciDir, 'lib/dispatcher/pool.js'))});
module.exports.errors = require(${JSON.stringify(path.join(undiciDir, 'lib/core/errors.js'))});
`;

/** @type {import('esbuild').Plugin} */
const distModules = {
  name: 'gatehouse-dist',
  setup(b) {
    b.onResolve({ filter: /early-signals\.js$/ }, (args) => {
      const resolved = path.resolve(args.resolveDir, args.path);
      if (resolved !== earlySignals) return undefined;
      return { path: './server/early-signals.js', external: true };
    });
    b.onResolve({ filter: /^undici$/ }, (args) =>
      args.importer.startsWith(dist + path.sep) ? { path: 'undici', namespace: 'undici-shim' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'undici-shim' }, () => ({
      contents: undiciShim,
      loader: 'js',
      resolveDir: undiciDir,
    }));
    b.onLoad({ filter: /\.js$/ }, async (args) => {
      if (!args.path.startsWith(dist + path.sep)) return undefined;
      let text = await readFile(args.path, 'utf8');
      for (const [, names] of text.matchAll(/^import \{([^}]*)\} from 'undici';$/gm)) {
        for (const name of (names ?? '').split(',').map((n) => n.trim().split(/\s+as\s+/)[0])) {
          if (name && !UNDICI.includes(name)) {
            throw new Error(
              `${args.path}: imports ${name} from undici; add it to UNDICI in ${path.basename(import.meta.filename)}`,
            );
          }
        }
      }
      if (/^import (?!\{)[^;]* from 'undici';$/m.test(text)) {
        throw new Error(`${args.path}: imports undici other than by name (UNDICI in scripts/bundle.js)`);
      }
      if (path.relative(dist, args.path) === path.join('stores', 'redis.js')) {
        const lazy = "createRequire(import.meta.url)('ioredis')";
        if (!text.includes(lazy)) throw new Error(`${args.path}: expected ${lazy}`);
        text = text.replace(lazy, "require('ioredis')");
      }
      // a static import of an outside package would be hoisted to the bundle's top and loaded at
      // every start, though its module is imported only when configured (pg by
      // postgres-keys.js): a require runs where the module's code runs, when it is first used
      text = text.replace(/^import (\w+) from '([^']+)';$/gm, (line, name, pkg) =>
        EXTERNAL.includes(pkg) ? `const ${name} = require('${pkg}');` : line,
      );
      const rel = path.relative(dist, args.path).split(path.sep).join('/');
      // the bundle sits in dist/: ./<rel> from its own URL is this module's URL in dist/
      text = text.replaceAll(
        'import.meta.url',
        `new URL(${JSON.stringify(`./${rel}`)}, import.meta.url).href`,
      );
      return { contents: text, loader: 'js', resolveDir: path.dirname(args.path) };
    });
  },
};

await build({
  entryPoints: [path.join(dist, 'cli', 'main.js')],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: EXTERNAL,
  plugins: [distModules],
  // CommonJS packages call `require` for Node's built-ins and each other: give the bundle one
  banner: {
    js: "import { createRequire as __gatehouseRequire } from 'node:module';\nconst require = __gatehouseRequire(import.meta.url);",
  },
  // readable stack traces: names and layout kept; the map is for a debugger or
  // `node --enable-source-maps`, and is not packed
  minify: false,
  keepNames: false,
  sourcemap: 'linked',
  sourcesContent: false,
  legalComments: 'none',
  logLevel: 'warning',
});

const eager = /^import [^;]* from "([^"]+)";$/gm;
const out = await readFile(outfile, 'utf8');
for (const [, pkg] of out.matchAll(eager)) {
  if (EXTERNAL.includes(pkg ?? '')) throw new Error(`${outfile}: ${pkg} would load at every start`);
}
