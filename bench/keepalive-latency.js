#!/usr/bin/env node
// The original system's claim, measured: pooling keep-alive connections to the services cut the
// average response time by 40 % against direct calls. Two ways to make the same calls to three
// HTTPS services, with about 1 ms of round-trip delay on every network hop (a TCP relay that
// delays each direction by BENCH_DELAY_US, default 500 µs; loopback only):
//
//   (a) direct:  client → relay → service i, a new TCP + TLS connection per call (what a client
//                without per-service pooling does); (a') the same with TLS session resumption
//   (b) gateway: client → relay → Gatehouse (one keep-alive TLS connection) → relay → service i,
//                Gatehouse keeping pooled TLS connections to the services
//
// Then, without delays: requests/s through Gatehouse to an HTTPS upstream next to an HTTP one.
//
//   npm run bench:latency        (= cd bench && npm ci --silent && node keepalive-latency.js)
//
// Env: BENCH_ROUNDS (200 rounds of three calls per way), BENCH_DELAY_US (500), BENCH_TLS
// (TLSv1.3 | TLSv1.2, for every TLS connection), BENCH_RPS_DURATION (5s per upstream),
// BENCH_RPS_CONNECTIONS (32). Bounded: the run gives up after 5 minutes. Needs `npm run build`.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import { startGatehouse } from './lib/gatehouse.js';
import { freePort } from './lib/net.js';
import { installCleanupHooks, makeTempDir, spawnProcess } from './lib/proc.js';
import { envNumber, fail, giveUpAfter } from './lib/settings.js';
import { parseDurationS } from './lib/wrk.js';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const REPO_DIR = path.resolve(BENCH_DIR, '..');

const ROUNDS = envNumber('BENCH_ROUNDS', 200, { integer: true });
const WARMUP_ROUNDS = 10;
const DELAY_US = Number(process.env.BENCH_DELAY_US ?? 500);
const TLS_VERSION = process.env.BENCH_TLS ?? 'TLSv1.3';
const RPS_DURATION_S = parseDurationS(process.env.BENCH_RPS_DURATION ?? '5s');
const RPS_CONNECTIONS = envNumber('BENCH_RPS_CONNECTIONS', 32, { integer: true });
if (!['TLSv1.2', 'TLSv1.3'].includes(TLS_VERSION)) fail('BENCH_TLS must be TLSv1.2 or TLSv1.3');
if (!(DELAY_US >= 0)) fail('BENCH_DELAY_US must be a number of microseconds');

installCleanupHooks();
giveUpAfter(300);

/** A CA and a server certificate for 127.0.0.1 (EC P-256, as most services have today). */
function makePki() {
  const dir = makeTempDir('gatehouse-bench-pki-');
  const run = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  run('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key');
  run('req', '-x509', '-new', '-key', 'ca.key', '-subj', '/CN=bench CA', '-days', '2', '-out', 'ca.pem');
  run('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'server.key');
  run('req', '-new', '-key', 'server.key', '-subj', '/CN=localhost', '-out', 'server.csr');
  execFileSync('sh', ['-c', 'printf "subjectAltName=DNS:localhost,IP:127.0.0.1\\n" > server.ext'], {
    cwd: dir,
  });
  run(
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    'server.ext',
    '-out',
    'server.pem',
  );
  const f = (name) => path.join(dir, name);
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key'), caPem: readFileSync(f('ca.pem')) };
}

/** Starts `node script args` and waits for its "ready" line. */
async function startPeer(name, script, args) {
  const proc = spawnProcess({ name, cmd: process.execPath, args: [path.join(BENCH_DIR, script), ...args] });
  const deadline = Date.now() + 10_000;
  while (!proc.output().includes('ready')) {
    if (!proc.running() || Date.now() > deadline) fail(`${name} did not start:\n${proc.output()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return proc;
}

/** One GET; resolves with its duration in ms once the whole body is in. */
function timedGet(options) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const req = https.get({ host: '127.0.0.1', ...options }, (res) => {
      res.resume();
      res.on('end', () => {
        if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode} from ${options.path}`));
        else resolve(Number(process.hrtime.bigint() - t0) / 1e6);
      });
      res.on('error', reject);
    });
    req.setTimeout(5000, () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

function stats(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const q = (p) => sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)];
  const mean = sorted.reduce((s, v) => s + v, 0) / sorted.length;
  return { n: sorted.length, mean, p50: q(0.5), p99: q(0.99) };
}

const ms = (v) => `${v.toFixed(2)} ms`;

/** The round trip of one hop as it is: 1-byte ping-pongs through a relay to an echo server. */
async function hopRtt(port) {
  const socket = net.connect({ port, host: '127.0.0.1', noDelay: true });
  await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const samples = [];
  for (let i = 0; i < 200; i++) {
    const t0 = process.hrtime.bigint();
    socket.write('x');
    await new Promise((resolve) => socket.once('data', resolve));
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  socket.destroy();
  return stats(samples);
}

async function latency(pki) {
  const [svcPorts, relayPorts] = [[], []];
  for (let i = 0; i < 4; i++) svcPorts.push(await freePort());
  for (let i = 0; i < 5; i++) relayPorts.push(await freePort());
  const services = await startPeer('services', 'lib/tls-services.js', [
    pki.cert,
    pki.key,
    ...svcPorts.slice(0, 3).map((p) => `https:${p}`),
    `echo:${svcPorts[3]}`,
  ]);
  // the gateway's port is known only once it runs: its relay starts after it
  const serviceRelays = await startPeer('relays', 'lib/delay-relay.js', [
    String(DELAY_US),
    ...svcPorts.map((p, i) => `${relayPorts[i === 3 ? 4 : i]}:${p}`),
  ]);
  const rtt = await hopRtt(relayPorts[4]);
  const gw = await startGatehouse({
    repoDir: REPO_DIR,
    upstreamUrl: 'http://127.0.0.1:1',
    configure: (config) => ({
      ...config,
      listen: {
        ...config.listen,
        tls: { cert: pki.cert, key: pki.key, minVersion: TLS_VERSION },
      },
      services: Object.fromEntries(
        svcPorts
          .slice(0, 3)
          .map((_, i) => [
            `s${i + 1}`,
            { targets: [`https://127.0.0.1:${relayPorts[i]}`], tls: { ca: pki.ca } },
          ]),
      ),
      routes: svcPorts.slice(0, 3).map((_, i) => ({
        name: `s${i + 1}`,
        match: { path: `/s${i + 1}/**` },
        service: `s${i + 1}`,
        stripPrefix: `/s${i + 1}`,
      })),
    }),
  });
  const gwPort = Number(new URL(gw.url).port);
  const gatewayRelay = await startPeer('gateway-relay', 'lib/delay-relay.js', [
    String(DELAY_US),
    `${relayPorts[3]}:${gwPort}`,
  ]);

  const tls = { ca: pki.caPem, servername: 'localhost', minVersion: TLS_VERSION, maxVersion: TLS_VERSION };
  // (a) a new agent per call: a new connection and a full handshake, no session to resume
  const direct = (i) => timedGet({ ...tls, port: relayPorts[i], path: '/', agent: false });
  // (a') one agent per service, no keep-alive: a new connection per call, the TLS session resumed
  const resumingAgents = svcPorts
    .slice(0, 3)
    .map(() => new https.Agent({ keepAlive: false, maxCachedSessions: 10 }));
  const resumed = (i) => timedGet({ ...tls, port: relayPorts[i], path: '/', agent: resumingAgents[i] });
  // (b) one keep-alive connection to the gateway
  const gatewayAgent = new https.Agent({ keepAlive: true, maxSockets: 1 });
  const viaGateway = (i) =>
    timedGet({ ...tls, port: relayPorts[3], path: `/s${i + 1}/item`, agent: gatewayAgent });

  const ways = { direct, resumed, viaGateway };
  const samples = { direct: [], resumed: [], viaGateway: [] };
  // rounds alternate between the ways, so that a slower moment of the machine costs each alike
  for (let round = 0; round < WARMUP_ROUNDS + ROUNDS; round++) {
    for (const [name, call] of Object.entries(ways)) {
      for (let i = 0; i < 3; i++) {
        const took = await call(i);
        if (round >= WARMUP_ROUNDS) samples[name].push(took);
      }
    }
  }
  gatewayAgent.destroy();
  for (const a of resumingAgents) a.destroy();
  await gw.stop();
  await Promise.all([services.stop(), serviceRelays.stop(), gatewayRelay.stop()]);
  return {
    rtt,
    direct: stats(samples.direct),
    resumed: stats(samples.resumed),
    viaGateway: stats(samples.viaGateway),
  };
}

/** Closed-loop load for `seconds` through `pool`: requests/s. */
async function load(pool, pathName, seconds) {
  let done = 0;
  let errors = 0;
  const until = performance.now() + seconds * 1000;
  const worker = async () => {
    while (performance.now() < until) {
      try {
        const res = await pool.request({ path: pathName, method: 'GET' });
        await res.body.dump();
        if (res.statusCode === 200) done++;
        else errors++;
      } catch {
        errors++;
      }
    }
  };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: RPS_CONNECTIONS }, worker));
  return { rps: done / ((performance.now() - t0) / 1000), errors };
}

async function throughput(pki) {
  const [httpsPort, httpPort] = [await freePort(), await freePort()];
  const services = await startPeer('services', 'lib/tls-services.js', [
    pki.cert,
    pki.key,
    `https:${httpsPort}`,
    `http:${httpPort}`,
  ]);
  const gw = await startGatehouse({
    repoDir: REPO_DIR,
    upstreamUrl: 'http://127.0.0.1:1',
    configure: (config) => ({
      ...config,
      services: {
        https: {
          targets: [`https://127.0.0.1:${httpsPort}`],
          tls: { ca: pki.ca },
          pool: { connections: 64 },
        },
        http: { targets: [`http://127.0.0.1:${httpPort}`], pool: { connections: 64 } },
      },
      routes: [
        { name: 'https', match: { path: '/https/**' }, service: 'https', stripPrefix: '/https' },
        { name: 'http', match: { path: '/http/**' }, service: 'http', stripPrefix: '/http' },
      ],
    }),
  });
  const pool = new Pool(gw.url.replace(/\/$/, ''), { connections: RPS_CONNECTIONS, pipelining: 1 });
  await load(pool, '/http/x', 1); // warm-up of both paths
  await load(pool, '/https/x', 1);
  const results = { http: [], https: [] };
  // two alternating runs each: a slower moment of the machine costs each alike
  for (let run = 0; run < 2; run++) {
    for (const which of ['http', 'https']) {
      results[which].push(await load(pool, `/${which}/x`, RPS_DURATION_S / 2));
    }
  }
  await pool.close();
  await gw.stop();
  await services.stop();
  const sum = (list) => ({
    rps: list.reduce((s, r) => s + r.rps, 0) / list.length,
    errors: list.reduce((s, r) => s + r.errors, 0),
  });
  return { http: sum(results.http), https: sum(results.https) };
}

const pki = makePki();
console.log(
  `Latency: ${ROUNDS} rounds of 3 calls per way (after ${WARMUP_ROUNDS} warm-up rounds), ` +
    `${DELAY_US} µs delay per direction per hop, ${TLS_VERSION}, EC P-256 certificates`,
);
const lat = await latency(pki);
console.log(
  `one hop's round trip through a relay, measured (1-byte ping-pong): mean ${ms(lat.rtt.mean)}, p50 ${ms(lat.rtt.p50)}, p99 ${ms(lat.rtt.p99)}`,
);
const row = (name, s) =>
  `| ${name.padEnd(58)} | ${String(s.n).padStart(5)} | ${ms(s.mean).padStart(9)} | ${ms(s.p50).padStart(9)} | ${ms(s.p99).padStart(9)} |`;
console.log('');
console.log(`| ${'way'.padEnd(58)} | calls |      mean |       p50 |       p99 |`);
console.log(`| ${'-'.repeat(58)} | ----: | --------: | --------: | --------: |`);
console.log(row('(a) direct, new TLS connection per call', lat.direct));
console.log(row("(a') direct, new connection per call, TLS session resumed", lat.resumed));
console.log(row('(b) via Gatehouse, keep-alive + pooled TLS to services', lat.viaGateway));
const cut = (a, b) => `${((1 - b / a) * 100).toFixed(1)} %`;
console.log('');
console.log(
  `reduction (b) vs (a):  mean ${cut(lat.direct.mean, lat.viaGateway.mean)}, p99 ${cut(lat.direct.p99, lat.viaGateway.p99)}`,
);
console.log(
  `reduction (b) vs (a'): mean ${cut(lat.resumed.mean, lat.viaGateway.mean)}, p99 ${cut(lat.resumed.p99, lat.viaGateway.p99)}`,
);

console.log('');
console.log(
  `Throughput through Gatehouse (no delay, ${RPS_CONNECTIONS} keep-alive client connections, ${RPS_DURATION_S} s per upstream):`,
);
const rps = await throughput(pki);
console.log(`| upstream | requests/s | errors |`);
console.log(`| -------- | ---------: | -----: |`);
console.log(
  `| http     | ${rps.http.rps.toFixed(0).padStart(10)} | ${String(rps.http.errors).padStart(6)} |`,
);
console.log(
  `| https    | ${rps.https.rps.toFixed(0).padStart(10)} | ${String(rps.https.errors).padStart(6)} |`,
);
console.log(`https / http: ${(rps.https.rps / rps.http.rps).toFixed(2)}`);
process.exit(0);
