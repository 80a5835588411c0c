/**
 * The production install paths that do not go through a clone's devDependencies: the tarball
 * `npm pack` makes, installed with `npm install --omit=dev`, runs; and `npm ci --omit=dev` in a
 * clone stops with a message that says what to do instead of `tsc: not found`.
 *
 * Runs on the dist/ that `npm test` builds before the suite. better-sqlite3's install script is
 * fed this checkout's own compiled addon as a local prebuild (prebuild-install looks there before
 * it downloads), so the installs take seconds rather than a C++ build of SQLite each.
 */
import { execFile, spawn } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, sep } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/process.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const SLOW = 120_000; // two npm installs from the cache, side by side: seconds on an idle machine

type Run = { code: number; out: string; stdout: string };

// as a user's shell has it: without the node_modules/.bin dirs that npx and npm scripts prepend
// (this checkout's tsc would otherwise be found from a clone that has none)
const PATH = (process.env.PATH ?? '')
  .split(delimiter)
  .filter((dir) => !dir.includes(`node_modules${sep}.bin`))
  .join(delimiter);

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      { cwd, env: { ...process.env, PATH, ...env }, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, out: stdout + stderr, stdout });
      },
    );
  });
}

const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

const work = mkdtempSync(join(tmpdir(), 'gatehouse-pack-'));

/** better-sqlite3's addon as built in this checkout, laid out as prebuild-install expects it. */
async function localPrebuild(): Promise<NodeJS.ProcessEnv> {
  const version = pkg.dependencies['better-sqlite3'];
  const dir = join(work, 'prebuilds');
  mkdirSync(dir);
  const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
  const tar = await run(
    'tar',
    [
      '-czf',
      join(dir, name),
      '-C',
      join(repoRoot, 'node_modules', 'better-sqlite3'),
      'build/Release/better_sqlite3.node',
    ],
    repoRoot,
  );
  expect(tar.code, tar.out).toBe(0);
  // read by prebuild-install in the install script (npm warns about an unknown env config)
  return {
    npm_config_better_sqlite3_local_prebuilds: dir,
    npm_config_audit: 'false',
    npm_config_fund: 'false',
  };
}

let npmEnv: NodeJS.ProcessEnv;
let tarball: string;
let files: string[];
let app: string;
let install: Run;
let ciOmitDev: Run;
const clone = join(work, 'clone');

async function packAndInstall(): Promise<void> {
  // --ignore-scripts: `prepare` would rebuild dist/ under the other test files that run it;
  // `npm test` has just built it
  const packed = await run(
    'npm',
    ['pack', '--ignore-scripts', '--json', '--pack-destination', work],
    repoRoot,
    npmEnv,
  );
  expect(packed.code, packed.out).toBe(0);
  const info = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  tarball = join(work, info[0]!.filename);
  files = info[0]!.files.map((f) => f.path);
  app = join(work, 'app');
  mkdirSync(app);
  // npm 11 asks the installing project to allow a dependency's install script (better-sqlite3
  // builds or fetches its native addon in it): docs/packaging.md gives this package.json
  writeFileSync(
    join(app, 'package.json'),
    '{ "private": true, "allowScripts": { "better-sqlite3": true } }\n',
  );
  install = await run('npm', ['install', '--omit=dev', '--prefer-offline', tarball], app, npmEnv);
}

/** what a clone holds that `npm ci` reads, then `npm ci --omit=dev` in it */
async function cloneAndCiOmitDev(): Promise<void> {
  mkdirSync(join(clone, 'scripts'), { recursive: true });
  for (const f of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json']) {
    copyFileSync(join(repoRoot, f), join(clone, f));
  }
  copyFileSync(join(repoRoot, 'scripts', 'prepare.js'), join(clone, 'scripts', 'prepare.js'));
  cpSync(join(repoRoot, 'src'), join(clone, 'src'), { recursive: true });
  ciOmitDev = await run('npm', ['ci', '--omit=dev', '--prefer-offline'], clone, npmEnv);
}

beforeAll(async () => {
  expect(existsSync(join(repoRoot, 'dist', 'cli', 'main.js')), 'run `npm run build` first').toBe(true);
  npmEnv = await localPrebuild();
  await Promise.all([packAndInstall(), cloneAndCiOmitDev()]);
}, SLOW);

afterAll(() => rmSync(work, { recursive: true, force: true }));

const installed = () => join(app, 'node_modules', 'gatehouse');

function cli(args: string[]): Promise<Run> {
  return run(process.execPath, [join(installed(), 'bin', 'gatehouse.js'), ...args], app);
}

describe('the packed tarball', () => {
  it('holds the compiled code, the CLI and the demo config, without sources, tests or build leftovers', () => {
    expect(files).toEqual(
      expect.arrayContaining([
        'package.json',
        'bin/gatehouse.js',
        // the bundle bin/gatehouse.js runs, and the modules it falls back to
        'dist/gatehouse.mjs',
        'dist/cli/main.js',
        'examples/demo.yaml',
        'dist/console/index.html',
      ]),
    );
    const stray = files.filter(
      (f) => /^(src|test|bench|scripts|deploy)\//.test(f) || f.endsWith('.map') || f.endsWith('.tsbuildinfo'),
    );
    expect(stray).toEqual([]);
  });

  it('installs with --omit=dev: no devDependency, a working native addon', async () => {
    expect(install.code, install.out).toBe(0);
    for (const dev of Object.keys(pkg.devDependencies)) {
      expect(existsSync(join(app, 'node_modules', dev)), dev).toBe(false);
    }
    expect(existsSync(join(app, 'node_modules', '.bin', 'gatehouse'))).toBe(true);
    // the API-key store on SQLite loads better-sqlite3 from the installed tree
    const config = join(work, 'keys.yaml');
    writeFileSync(
      config,
      `database: { file: '${join(work, 'data', 'keys.db')}' }\n` +
        `auth: { apiKey: { secret: 'packaging-test-secret-0123456789' } }\n` +
        `services: { a: { targets: ['http://127.0.0.1:1'] } }\n` +
        `routes: [ { name: r, match: { path: /x }, service: a, auth: [apiKey] } ]\n`,
    );
    const created = await cli(['keys', 'create', '--name', 'ci', '--tier', 'default', '-c', config]);
    expect(created.code, created.out).toBe(0);
    const listed = await cli(['keys', 'list', '-c', config]);
    expect(listed.code, listed.out).toBe(0);
    expect(listed.out).toContain('ci');
  });

  it('validates the demo config it ships, and starts, proxies and stops on SIGTERM with exit 0', async () => {
    const demo = join(installed(), 'examples', 'demo.yaml');
    const validated = await cli(['validate', '-c', demo]);
    expect(validated.code, validated.out).toBe(0);
    expect(validated.out).toContain(': ok');

    // the demo config on free ports, its service on a local upstream
    const upstream: Upstream = await startUpstream();
    try {
      const yaml = readFileSync(demo, 'utf8')
        .replace(/port: 8080/, 'port: 0')
        .replace(/port: 9080/, 'port: 0')
        .replace(/targets: \[[^\]]*\]/, `targets: [${upstream.url}]`);
      const config = join(work, 'demo.yaml');
      writeFileSync(config, yaml);
      const child = spawn(
        process.execPath,
        [join(installed(), 'bin', 'gatehouse.js'), 'start', '-c', config],
        {
          cwd: app,
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | string>((res) =>
        child.on('exit', (code, signal) => res(code ?? signal ?? -1)),
      );
      const ready = await new Promise<RegExpExecArray>((res, rej) => {
        const pattern = /"port":(\d+),"adminPort":(\d+)[^\n]*gatehouse ready/;
        const timer = setTimeout(() => rej(new Error(`not ready; output:\n${out}`)), 15_000);
        const check = () => {
          const m = pattern.exec(out);
          if (m) {
            clearTimeout(timer);
            res(m);
          }
        };
        child.stdout.on('data', check);
        child.stderr.on('data', check);
        void exited.then(() => rej(new Error(`exited before ready; output:\n${out}`)));
      });
      const res = await fetch(`http://127.0.0.1:${ready[1]}/api/items/1`);
      expect(res.status).toBe(200);
      await res.text();
      expect(upstream.received.map((r) => r.url)).toContain('/items/1');
      expect((await fetch(`http://127.0.0.1:${ready[2]}/readyz`)).status).toBe(200);
      child.kill('SIGTERM');
      expect(await exited, out).toBe(0);
    } finally {
      await upstream.close();
    }
  });
});

describe('npm ci --omit=dev in a clone', () => {
  it('stops in `prepare` with a message naming the production paths, not `tsc: not found`', () => {
    expect(ciOmitDev.code).not.toBe(0);
    expect(ciOmitDev.out).not.toMatch(/tsc: not found/);
    expect(ciOmitDev.out).toContain('cannot build dist/: TypeScript is a devDependency');
    expect(ciOmitDev.out).toContain('npm install --omit=dev ./gatehouse-<version>.tgz');
    expect(existsSync(join(clone, 'node_modules', 'typescript'))).toBe(false);
  });
});
