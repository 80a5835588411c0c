// Builds the admin web console (ui/) into dist/console: one ES module and one stylesheet, named by
// their content hash (the server caches them for good), and the page that loads them. No inline
// script or style, so the page runs under a Content-Security-Policy of `'self'` only.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename } from 'node:path';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';

const OUT = 'dist/console';
rmSync(OUT, { recursive: true, force: true });
mkdirSync(OUT, { recursive: true });

const result = await build({
  entryPoints: { app: 'ui/src/main.tsx' },
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2022',
  outdir: OUT,
  entryNames: '[name]-[hash]',
  jsx: 'automatic',
  jsxImportSource: 'preact',
  tsconfig: 'ui/tsconfig.json',
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
});

const outputs = Object.keys(result.metafile.outputs);
const js = outputs.find((f) => f.endsWith('.js'));
const css = outputs.find((f) => f.endsWith('.css'));
if (js === undefined || css === undefined) throw new Error('the console build wrote no script or stylesheet');

writeFileSync(
  `${OUT}/index.html`,
  `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <meta name="referrer" content="no-referrer" />
    <title>Gatehouse console</title>
    <link rel="icon" href="data:," />
    <link rel="stylesheet" href="/ui/${basename(css)}" />
    <script type="module" src="/ui/${basename(js)}"></script>
  </head>
  <body>
    <div id="app"></div>
    <noscript>The Gatehouse console needs JavaScript.</noscript>
  </body>
</html>
`,
);

let raw = 0;
let gz = 0;
for (const f of [js, css, `${OUT}/index.html`]) {
  const body = readFileSync(f);
  raw += body.length;
  gz += gzipSync(body).length;
}
const kb = (n) => `${(n / 1024).toFixed(1)} KiB`;
console.log(`console: ${kb(raw)} (${kb(gz)} gzipped) in ${OUT}`);
