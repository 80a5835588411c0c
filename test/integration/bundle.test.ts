/**
 * The one-file bundle (dist/gatehouse.mjs, scripts/bundle.js) that bin/gatehouse.js runs when it
 * is there: run from a copy of the package that holds only bin/, the bundle, the one module it
 * shares with bin/ (dist/server/early-signals.js), package.json and examples/, so that nothing can
 * fall back to dist/'s modules. What the bundle rewrites is exercised: paths relative to a
 * module's own URL (the version from package.json, the demo config), ioredis required lazily
 * from inside the bundle (a Redis-backed rate limit), better-sqlite3 left outside (the API-key
 * store), and the signal hand-off (SIGTERM drains, exit 0).
 */
import { execFile, spawn } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../helpers/process.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const work = mkdtempSync(join(tmpdir(), 'gatehouse-bundle-'));
const app = join(work, 'app');
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const PREFIX = `test:bundle:${process.pid}:`;

type Run = { code: number; out: string; stdout: string };

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [join(app, 'bin', 'gatehouse.js'), ...args],
      { cwd: work, env: { ...process.env, ...env } },
      (err, stdout, stderr) => {
        resolve({
          code: err ? (typeof err.code === 'number' ? err.code : 1) : 0,
          out: stdout + stderr,
          stdout,
        });
      },
    );
  });
}

beforeAll(() => {
  expect(existsSync(join(repoRoot, 'dist', 'gatehouse.mjs')), 'run `npm run build` first').toBe(true);
  mkdirSync(join(app, 'dist', 'server'), { recursive: true });
  cpSync(join(repoRoot, 'bin'), join(app, 'bin'), { recursive: true });
  cpSync(join(repoRoot, 'examples'), join(app, 'examples'), { recursive: true });
  cpSync(join(repoRoot, 'package.json'), join(app, 'package.json'));
  cpSync(join(repoRoot, 'dist', 'gatehouse.mjs'), join(app, 'dist', 'gatehouse.mjs'));
  cpSync(
    join(repoRoot, 'dist', 'server', 'early-signals.js'),
    join(app, 'dist', 'server', 'early-signals.js'),
  );
  symlinkSync(join(repoRoot, 'node_modules'), join(app, 'node_modules'));
});

afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('the bundled CLI', () => {
  it('is what bin/gatehouse.js runs: no dist/cli/main.js is needed', async () => {
    expect(existsSync(join(app, 'dist', 'cli', 'main.js'))).toBe(false);
    const version = await cli(['version']);
    expect(version.code, version.out).toBe(0);
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    expect(version.out).toContain(pkg.version);
    // GATEHOUSE_BUNDLE=off asks for dist/'s modules, which this copy does not have
    const unbundled = await cli(['version'], { GATEHOUSE_BUNDLE: 'off' });
    expect(unbundled.code).not.toBe(0);
    expect(unbundled.out).toMatch(/cli\/main\.js/);
  });

  it('is not used when older than the last tsc build (dist/.tsbuildinfo)', async () => {
    const info = join(app, 'dist', '.tsbuildinfo');
    writeFileSync(info, '{}');
    const later = new Date(Date.now() + 60_000);
    utimesSync(info, later, later);
    try {
      const res = await cli(['version']);
      // it goes for dist/cli/main.js, which this copy does not have
      expect(res.code).not.toBe(0);
      expect(res.out).toMatch(/cli\/main\.js/);
    } finally {
      rmSync(info);
    }
    expect((await cli(['version'])).code).toBe(0);
  });

  it('validates the demo config it finds beside itself', async () => {
    const res = await cli(['validate', '-c', join(app, 'examples', 'demo.yaml')]);
    expect(res.code, res.out).toBe(0);
    expect(res.out).toContain(': ok');
  });

  it('reports a bad config with file:line, as dist/ does', async () => {
    const file = join(work, 'bad.yaml');
    writeFileSync(file, 'listen: { port: nope }\n');
    const res = await cli(['validate', '-c', file]);
    expect(res.code).toBe(1);
    expect(res.out).toMatch(/bad\.yaml:1:\d+: listen\.port/);
  });

  describe('start', () => {
    let upstream: Upstream;
    let redis: Redis;
    beforeAll(async () => {
      upstream = await startUpstream();
      redis = new Redis(REDIS_URL, { lazyConnect: true });
      await redis.connect();
    });
    afterAll(async () => {
      await upstream.close();
      const keys = await redis.keys(`${PREFIX}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    });

    it('serves the full pipeline (API key in SQLite, limit counted in Redis) and drains on SIGTERM', async () => {
      const config = join(work, 'gatehouse.yaml');
      const secret = 'bundle-test-secret-0123456789abcdef';
      writeFileSync(
        config,
        [
          'listen: { host: 127.0.0.1, port: 0 }',
          'admin: { host: 127.0.0.1, port: 0 }',
          `redis: { url: '${REDIS_URL}' }`,
          `database: { file: '${join(work, 'keys.db')}' }`,
          `auth: { apiKey: { secret: '${secret}' } }`,
          `rateLimit: { keyPrefix: '${PREFIX}', onStoreError: closed, defaultTier: t, tiers: { t: { limits: [{ requests: 1000, per: 1m }] } } }`,
          `services: { a: { targets: ['${upstream.url}'] } }`,
          'routes: [ { name: r, match: { path: /** }, service: a, auth: [apiKey] } ]',
          '',
        ].join('\n'),
      );
      const created = await cli(['keys', 'create', '--name', 'bundle', '--tier', 't', '-c', config]);
      expect(created.code, created.out).toBe(0);
      // the key is the last line on stdout
      const key = created.stdout.trim().split('\n').pop();
      expect(key, created.out).toMatch(/^\S{20,}$/);

      const child = spawn(process.execPath, [join(app, 'bin', 'gatehouse.js'), 'start', '-c', config], {
        cwd: work,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | string>((res) =>
        child.on('exit', (code, signal) => res(code ?? signal ?? -1)),
      );
      try {
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
        const [, port, adminPort] = ready;
        expect((await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status).toBe(200);
        const denied = await fetch(`http://127.0.0.1:${port}/x`);
        expect(denied.status).toBe(401);
        await denied.arrayBuffer();
        const allowed = await fetch(`http://127.0.0.1:${port}/x`, { headers: { 'x-api-key': key! } });
        expect(allowed.status, out).toBe(200);
        expect(allowed.headers.get('ratelimit')).toMatch(/\br=999\b/);
        // counted in Redis, through the ioredis bundled in the bundle
        const keys = await redis.keys(`${PREFIX}*`);
        expect(keys.length).toBeGreaterThan(0);
        await allowed.arrayBuffer();
      } finally {
        child.kill('SIGTERM');
      }
      expect(await exited, out).toBe(0);
    });
  });
});
