#!/usr/bin/env node
// npm's `prepare` script: builds dist/ with TypeScript, then bundles it (scripts/bundle.js). npm runs it after `npm ci` / `npm install`
// in a clone and before `npm pack`; never when the packed tarball is installed (its dist/ is in
// it). TypeScript is a devDependency, so `npm ci --omit=dev` in a clone has no compiler: say so,
// and how to get a production install, rather than failing with `tsc: not found`.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

let tsc;
try {
  tsc = require.resolve('typescript/bin/tsc');
} catch {
  process.stderr.write(
    [
      'gatehouse: cannot build dist/: TypeScript is a devDependency, and this install left the',
      'devDependencies out (--omit=dev). A clone is built with its devDependencies:',
      '  npm ci && npm prune --omit=dev     (builds dist/, then drops the devDependencies)',
      'For production, install the packed tarball or run the container image instead:',
      '  npm pack && npm install --omit=dev ./gatehouse-<version>.tgz',
      '  podman build -f deploy/docker/Dockerfile .   (or docker build)',
      'See docs/packaging.md.',
      '',
    ].join('\n'),
  );
  process.exit(1);
}

const result = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { stdio: 'inherit' });
if (result.status !== 0) process.exit(result.status ?? 1);
// then the one-file bundle bin/gatehouse.js prefers (scripts/bundle.js), and the admin web console
// (ui/); both by esbuild, a devDependency present whenever TypeScript is
for (const script of ['scripts/bundle.js', 'scripts/build-console.js']) {
  const step = spawnSync(process.execPath, [script], { stdio: 'inherit' });
  if (step.status !== 0) process.exit(step.status ?? 1);
}
