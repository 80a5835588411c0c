// Instructions per proxied request, counted by valgrind (callgrind), for this checkout and for an
// earlier revision: a figure that does not move with the machine's noise, unlike requests/s.
//
//   node bench/instructions.js [BASE_REV]      (default BASE_REV: HEAD~1)
//
// Each build serves SMALL and then LARGE keep-alive requests (8 at a time) under callgrind; the
// difference of the two totals over LARGE − SMALL requests is the cost of one warm request,
// without start-up. Takes several minutes: node runs about 50 times slower under valgrind.
//
// BENCH_AUTH=jwt: the route needs a JWT (RS256, `publicKeys`) and every request sends the same
// token, so each build measures a verified-token cache hit. BENCH_REVOCATION=1 (with it) turns
// `auth.jwt.revocation` on for this checkout only (an earlier revision may not know the option;
// needs Redis at REDIS_URL): the ratio is then the cost of the denylist check per request.
//
// The cost of a feature: BENCH_ROUTE (JSON) is merged into the bench route and BENCH_CONFIG (JSON)
// into the top level of the config of this checkout only; with BASE_REV = HEAD the ratio is the
// feature's cost, e.g. BENCH_ROUTE='{"cors":{"origins":["*"]}}' node bench/instructions.js HEAD
// BENCH_EXTRAS_BOTH=1 applies them to the base revision too: a before/after of one configuration
// (e.g. the full pipeline: JWT + RBAC + a Redis limit + access log + tracing).
//
// BENCH_SYSTEM=undici-naive: instead of an earlier revision, the 40-line node:http + undici Pool
// proxy of peers/undici-naive.js (undici from this directory's package.json) is measured the same
// way, so the ratio is Gatehouse's instructions per request against "the obvious code"'s. Its
// default counts are 2500 and 6500: at 500 and 2500 the difference is still mostly V8 compiling
// the hot code (measured: the peer 754k instructions per request at 500/2500, 217k at 2500/6500),
// and the two systems compile different amounts of code, so only warm figures compare them.
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync, sign } from 'node:crypto';
import { cpSync, existsSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { toYaml, benchConfig } from './lib/gatehouse.js';
import { freePort, waitForHttp, waitForPort } from './lib/net.js';
import { startNginx } from './lib/nginx.js';
import { installCleanupHooks, makeTempDir, spawnProcess, which } from './lib/proc.js';
import { envNumber, fail } from './lib/settings.js';

const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const PEER_MODE = process.env.BENCH_SYSTEM === 'undici-naive';
const SMALL = envNumber('BENCH_SMALL', PEER_MODE ? 2500 : 500, { integer: true });
const LARGE = envNumber('BENCH_LARGE', PEER_MODE ? 6500 : 2500, { integer: true });
const AUTH = process.env.BENCH_AUTH ?? 'none';
if (AUTH !== 'none' && AUTH !== 'jwt') fail(`BENCH_AUTH: none or jwt, not ${AUTH}`);
const REVOCATION = process.env.BENCH_REVOCATION === '1';
const SYSTEM = process.env.BENCH_SYSTEM ?? 'gatehouse';
if (SYSTEM !== 'gatehouse' && SYSTEM !== 'undici-naive')
  fail(`BENCH_SYSTEM: gatehouse or undici-naive, not ${SYSTEM}`);
if (SYSTEM === 'undici-naive' && AUTH !== 'none') fail('BENCH_SYSTEM=undici-naive has no auth');
// BENCH_ONLY=this or base: measure one side only (e.g. this checkout again after a change)
const ONLY = process.env.BENCH_ONLY ?? 'both';
const PEER = path.join(path.dirname(fileURLToPath(import.meta.url)), 'peers', 'undici-naive.js');
if (REVOCATION && AUTH !== 'jwt') fail('BENCH_REVOCATION=1 needs BENCH_AUTH=jwt');

/** BENCH_AUTH=jwt: a public key file and one token it verifies (valid for a day) */
function jwtFixture() {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = path.join(makeTempDir('gatehouse-bench-jwt-'), 'jwt.pem');
  writeFileSync(pem, publicKey.export({ type: 'spki', format: 'pem' }));
  const b64 = (/** @type {string | Buffer} */ v) => Buffer.from(v).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    sub: 'bench-user',
    roles: ['reader'], // for a route with `permissions` (rbac in BENCH_CONFIG)
    jti: 'bench-jti',
    iss: 'bench',
    aud: 'gatehouse',
    iat: now,
    exp: now + 86_400,
  };
  const input = `${b64(JSON.stringify({ alg: 'RS256', typ: 'JWT' }))}.${b64(JSON.stringify(claims))}`;
  return { pem, token: `${input}.${b64(sign('RSA-SHA256', Buffer.from(input), privateKey))}` };
}
const jwt = AUTH === 'jwt' ? jwtFixture() : null;

/**
 * The benchmark config, with the JWT route when BENCH_AUTH=jwt (and the denylist for this
 * checkout when BENCH_REVOCATION=1).
 * @param {{ port: number, adminPort: number, upstreamUrl: string }} where
 * @param {boolean} thisCheckout
 */
function configFor(where, thisCheckout) {
  const config = /** @type {Record<string, any>} */ (benchConfig(where));
  if (jwt === null) return config;
  const denylist = REVOCATION && thisCheckout;
  const revocation = denylist ? { revocation: { keyPrefix: 'bench-instructions:' } } : {};
  config.auth = { jwt: { publicKeys: [jwt.pem], issuer: 'bench', audience: 'gatehouse', ...revocation } };
  if (denylist) config.redis = { url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' };
  config.routes = config.routes.map((/** @type {object} */ r) => ({ ...r, auth: ['jwt'], rateLimit: 'off' }));
  return config;
}

const ROUTE_EXTRA = jsonEnv('BENCH_ROUTE');
const CONFIG_EXTRA = jsonEnv('BENCH_CONFIG');

/** @param {string} name */
function jsonEnv(name) {
  const text = process.env[name];
  if (text === undefined || text === '') return null;
  try {
    return /** @type {Record<string, unknown>} */ (JSON.parse(text));
  } catch {
    fail(`${name} must be a JSON object`);
  }
}

/**
 * Checks out `rev` into a temporary worktree and builds it: with this checkout's node_modules when
 * both have the same package-lock.json, else with its own (`npm ci`, from npm's cache when it can),
 * so a revision before a dependency upgrade is measured with the dependencies it was written for.
 * @param {string} rev
 */
function buildRevision(rev) {
  const dir = path.join(makeTempDir('gatehouse-bench-rev-'), 'tree');
  const git = spawnSync('git', ['worktree', 'add', '--detach', dir, rev], {
    cwd: REPO_DIR,
    encoding: 'utf8',
  });
  if (git.status !== 0) fail(`git worktree add ${rev}: ${git.stderr}`);
  process.on('exit', () => spawnSync('git', ['worktree', 'remove', '--force', dir], { cwd: REPO_DIR }));
  const lock = 'package-lock.json';
  const sameDeps =
    readFileSync(path.join(dir, lock), 'utf8') === readFileSync(path.join(REPO_DIR, lock), 'utf8');
  if (sameDeps) {
    symlinkSync(path.join(REPO_DIR, 'node_modules'), path.join(dir, 'node_modules'));
  } else {
    console.log(`${rev} has other dependencies: npm ci in its worktree`);
    const npm = spawnSync('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts'], {
      cwd: dir,
      encoding: 'utf8',
    });
    if (npm.status !== 0) fail(`npm ci for ${rev} failed:\n${npm.stdout}${npm.stderr}`);
    // install scripts were skipped (prepare would build): the native addon is ours when it is the
    // same version, else built
    const addon = 'node_modules/better-sqlite3';
    const version = (/** @type {string} */ root) =>
      JSON.parse(readFileSync(path.join(root, addon, 'package.json'), 'utf8')).version;
    if (version(dir) === version(REPO_DIR)) {
      cpSync(path.join(REPO_DIR, addon, 'build'), path.join(dir, addon, 'build'), { recursive: true });
    } else {
      const rebuild = spawnSync('npm', ['rebuild', 'better-sqlite3'], { cwd: dir, encoding: 'utf8' });
      if (rebuild.status !== 0) fail(`npm rebuild for ${rev} failed:\n${rebuild.stdout}${rebuild.stderr}`);
    }
  }
  const tsc = spawnSync(
    process.execPath,
    [path.join(dir, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
    {
      cwd: dir,
      encoding: 'utf8',
    },
  );
  if (tsc.status !== 0) fail(`building ${rev} failed:\n${tsc.stdout}${tsc.stderr}`);
  return dir;
}

/**
 * `n` GETs on 8 keep-alive connections.
 * @param {string} url
 * @param {number} n
 */
function load(url, n) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
  let sent = 0;
  let done = 0;
  return new Promise((resolve, reject) => {
    const one = () => {
      if (sent >= n) return;
      sent++;
      http
        .get(url, { agent, headers: jwt === null ? {} : { authorization: `Bearer ${jwt.token}` } }, (res) => {
          if (res.statusCode !== 200) reject(new Error(`the gateway answered ${res.statusCode}`));
          res.resume();
          res.on('end', () => (++done === n ? resolve(undefined) : one()));
        })
        .on('error', reject);
    };
    for (let i = 0; i < 8; i++) one();
  }).finally(() => agent.destroy());
}

/**
 * Total instructions of the 40-line undici peer that starts, serves `n` requests and stops.
 * @param {string} upstreamUrl
 * @param {number} n
 */
async function peerInstructions(upstreamUrl, n) {
  const work = makeTempDir('gatehouse-bench-cg-');
  const port = await freePort();
  const out = path.join(work, 'callgrind.out');
  const proc = spawnProcess({
    name: 'undici-naive (callgrind)',
    cmd: 'valgrind',
    args: [
      '--tool=callgrind',
      `--callgrind-out-file=${out}`,
      process.execPath,
      PEER,
      '--port',
      String(port),
      '--target',
      upstreamUrl.replace(/\/$/, ''),
    ],
  });
  // the peer has no readiness endpoint: it is ready once it listens
  await waitForPort(port, { timeoutMs: 300_000, isAlive: proc.running, what: 'undici-naive' });
  await load(`http://127.0.0.1:${port}/x`, n);
  await proc.stop();
  const summary = /^summary: (\d+)/m.exec(existsSync(out) ? readFileSync(out, 'utf8') : '');
  if (!summary) fail(`no callgrind summary in ${out}`);
  return Number(summary[1]);
}

/**
 * Total instructions of a gateway (built in `dir`) that starts, serves `n` requests and stops.
 * @param {string} dir
 * @param {string} upstreamUrl
 * @param {number} n
 * @param {boolean} [extras]  BENCH_ROUTE and BENCH_CONFIG applied (this checkout only)
 */
async function instructions(dir, upstreamUrl, n, extras = false) {
  const thisCheckout = dir === REPO_DIR;
  const work = makeTempDir('gatehouse-bench-cg-');
  const port = await freePort();
  const adminPort = await freePort();
  const configPath = path.join(work, 'gatehouse.yaml');
  const config = configFor({ port, adminPort, upstreamUrl }, thisCheckout);
  if (extras) {
    Object.assign(config, CONFIG_EXTRA ?? {});
    const routes = /** @type {Array<Record<string, unknown>>} */ (config.routes);
    for (const route of routes) Object.assign(route, ROUTE_EXTRA ?? {});
    if (ROUTE_EXTRA !== null && ('respond' in ROUTE_EXTRA || 'redirect' in ROUTE_EXTRA))
      for (const route of routes) delete route.service;
  }
  writeFileSync(configPath, toYaml(config));
  const out = path.join(work, 'callgrind.out');
  const proc = spawnProcess({
    name: 'gatehouse (callgrind)',
    cmd: 'valgrind',
    args: [
      '--tool=callgrind',
      `--callgrind-out-file=${out}`,
      process.execPath,
      path.join(dir, 'bin/gatehouse.js'),
      'start',
      '-c',
      configPath,
    ],
    env: { LOG_LEVEL: 'warn' },
  });
  await waitForHttp(`http://127.0.0.1:${adminPort}/readyz`, {
    timeoutMs: 300_000,
    isAlive: proc.running,
    what: 'gatehouse',
  });
  await load(`http://127.0.0.1:${port}/x`, n);
  await proc.stop(); // SIGTERM: the gateway drains and exits, and callgrind writes its totals
  const summary = /^summary: (\d+)/m.exec(existsSync(out) ? readFileSync(out, 'utf8') : '');
  if (!summary) fail(`no callgrind summary in ${out}`);
  return Number(summary[1]);
}

async function main() {
  if (!which('valgrind')) fail('valgrind is missing: apt-get install -y valgrind');
  if (!which('nginx'))
    fail('nginx is missing: run  node bench/run.js direct  once (it installs nginx and wrk)');
  if (!existsSync(path.join(REPO_DIR, 'dist'))) fail('dist/ is missing: npm run build first');
  installCleanupHooks();
  const base = SYSTEM === 'undici-naive' ? 'undici-naive' : (process.argv[2] ?? 'HEAD~1');
  const builds = [
    {
      name: base,
      dir: SYSTEM === 'undici-naive' || ONLY === 'this' ? null : buildRevision(base),
      extras: process.env.BENCH_EXTRAS_BOTH === '1',
    },
    { name: 'this checkout', dir: REPO_DIR, extras: true },
  ].filter((b) => !(ONLY === 'base' && b.dir === REPO_DIR) && !(ONLY === 'this' && b.dir !== REPO_DIR));
  const upstream = await startNginx({ name: 'upstream' });
  const perRequest = [];
  try {
    for (const b of builds) {
      const count = (/** @type {number} */ n) =>
        b.dir === null ? peerInstructions(upstream.url, n) : instructions(b.dir, upstream.url, n, b.extras);
      const small = await count(SMALL);
      const large = await count(LARGE);
      const each = (large - small) / (LARGE - SMALL);
      perRequest.push(each);
      console.log(`${b.name}: ${Math.round(each).toLocaleString('en')} instructions per request`);
    }
  } finally {
    await upstream.stop();
  }
  const [before, after] = perRequest;
  if (before !== undefined && after !== undefined)
    console.log(`this checkout ÷ ${base}: ${(after / before).toFixed(3)}`);
}

await main();
