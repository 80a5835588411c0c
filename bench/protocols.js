#!/usr/bin/env node
// Protocols benchmark: the same route through one Gatehouse process (pinned to one core) over
// HTTP/1.1 cleartext, HTTPS HTTP/1.1 and HTTP/2 over TLS, side by side in one run, plus the TLS
// handshakes per second it sustains (HTTPS with Connection: close: one full handshake per request).
// The upstream is nginx answering a small body. Loopback only; bounded in time.
//
//   node bench/protocols.js
//
// Tools: wrk (HTTP/1.1, HTTPS), h2load from nghttp2-client (HTTP/2); installed from Debian when
// missing and running as root. Env: BENCH_DURATION (10s), BENCH_WARMUP (3s), BENCH_CONNECTIONS (64),
// BENCH_STREAMS (1: concurrent streams per HTTP/2 connection, so that as many requests are in flight
// as over HTTP/1.1; a second HTTP/2 row uses 10).
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startGatehouse } from './lib/gatehouse.js';
import { runH2load, selfSignedCertificate } from './lib/h2load.js';
import { freePort } from './lib/net.js';
import { startNginx } from './lib/nginx.js';
import { installCleanupHooks, makeTempDir, which } from './lib/proc.js';
import { envNumber, fail } from './lib/settings.js';
import { runWrk } from './lib/wrk.js';

const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function ensureTools() {
  const missing = [
    ['wrk', 'wrk'],
    ['h2load', 'nghttp2-client'],
    ['nginx', 'nginx'],
  ].filter(([bin]) => !which(bin));
  if (missing.length === 0) return;
  const packages = missing.map(([, pkg]) => pkg).join(' ');
  if (process.getuid?.() !== 0) fail(`missing: run  sudo apt-get install -y ${packages}`);
  const res = spawnSync(
    'sh',
    ['-c', `apt-get install -y ${packages} || (apt-get update && apt-get install -y ${packages})`],
    {
      stdio: 'inherit',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    },
  );
  if (res.status !== 0) fail(`apt-get could not install ${packages}`);
}

async function main() {
  ensureTools();
  installCleanupHooks();
  const duration = process.env.BENCH_DURATION ?? '10s';
  const warmup = process.env.BENCH_WARMUP ?? '3s';
  const connections = envNumber('BENCH_CONNECTIONS', 64, { integer: true });
  const streams = envNumber('BENCH_STREAMS', 1, { integer: true });
  const cpus = os.availableParallelism();
  // the gateway on the last core, the load generator and nginx on the others
  const sutCpu = cpus > 1 ? cpus - 1 : null;
  const loadCpu = cpus > 1 ? 0 : null;

  const dir = makeTempDir('gatehouse-bench-protocols-');
  const tls = selfSignedCertificate(dir);
  const upstream = await startNginx({ name: 'nginx-upstream', cpu: loadCpu });
  const plainPort = await freePort();
  const gw = await startGatehouse({
    repoDir: REPO_DIR,
    upstreamUrl: upstream.url,
    cpu: sutCpu,
    configure: (config) => ({
      ...config,
      listen: {
        ...config.listen,
        tls: { cert: tls.cert, key: tls.key },
        plain: { port: plainPort, mode: 'serve' },
      },
    }),
  });
  const tlsPort = new URL(gw.url).port;
  const targets = {
    http: `http://127.0.0.1:${plainPort}/`,
    https: `https://127.0.0.1:${tlsPort}/`,
  };
  const rows = [];
  try {
    const wrk = async (label, url, headers = {}) => {
      if (warmup !== '0') await runWrk({ url, duration: warmup, connections, cpu: loadCpu, headers });
      const r = await runWrk({ url, duration, connections, cpu: loadCpu, headers });
      rows.push({
        label,
        rps: r.rps,
        latency: `mean ${r.latencyMs.avg} ms, p99 ${r.latencyMs.p99} ms`,
        errors: r.errorCount ?? 0,
      });
    };
    console.log(
      `gatehouse pinned to cpu ${sutCpu ?? '(none)'}, load on cpu ${loadCpu ?? '(none)'}; ${connections} connections, ${duration} each`,
    );
    await wrk('HTTP/1.1 cleartext (keep-alive)', targets.http);
    await wrk('HTTPS HTTP/1.1 (keep-alive)', targets.https);
    if (warmup !== '0')
      await runH2load({ url: targets.https, duration: warmup, connections, streams, cpu: loadCpu });
    const h2 = await runH2load({ url: targets.https, duration, connections, streams, cpu: loadCpu });
    if (h2.protocol !== 'h2') throw new Error(`h2load negotiated ${h2.protocol ?? 'nothing'}, not h2`);
    rows.push({
      label: `HTTP/2 over TLS (${streams} stream(s) per connection)`,
      rps: h2.rps,
      latency: `mean ${h2.mean ?? '?'}`,
      errors: h2.failed + h2.non2xx,
    });
    const many = await runH2load({ url: targets.https, duration, connections, streams: 10, cpu: loadCpu });
    rows.push({
      label: 'HTTP/2 over TLS (10 streams per connection)',
      rps: many.rps,
      latency: `mean ${many.mean ?? '?'}`,
      errors: many.failed + many.non2xx,
    });
    await wrk('HTTPS, Connection: close (one TLS handshake per request)', targets.https, {
      Connection: 'close',
    });
    await wrk('HTTP/1.1 cleartext, Connection: close', targets.http, { Connection: 'close' });
  } finally {
    await gw.stop();
    await upstream.stop();
  }
  const base = rows[0]?.rps ?? 0;
  console.log(
    '\n| protocol | requests/s | vs HTTP/1.1 | latency | errors |\n| --- | ---: | ---: | --- | ---: |',
  );
  for (const r of rows) {
    console.log(
      `| ${r.label} | ${Math.round(r.rps)} | ${base ? (r.rps / base).toFixed(2) : '-'} | ${r.latency} | ${r.errors} |`,
    );
  }
  console.log(`\nnode ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'}, ${cpus} cores`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exit(1);
});
