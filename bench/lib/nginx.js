// nginx as the benchmark upstream (fixed JSON answer) or as the reference reverse proxy.
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePort, waitForPort } from './net.js';
import { makeTempDir, spawnProcess, which } from './proc.js';

/** The upstream's answer: a 95-byte JSON body (the same for every system measured). */
export const UPSTREAM_BODY =
  '{"ok":true,"service":"upstream","message":"hello from the gatehouse benchmark","pad":"0123456"}';

/**
 * @typedef {object} NginxConfigOptions
 * @property {string} dir  prefix directory: pid, logs and temp files go there
 * @property {number} port  loopback port to listen on
 * @property {string} [body]  'static' mode: the JSON body answered to every request
 * @property {number} [upstreamPort]  'proxy' mode: the upstream to forward to
 * @property {number} [keepalive]  'proxy' mode: idle keep-alive connections kept to the upstream
 * @property {string} [extraHttp]  extra directives for the http block
 * @property {number} [workers]  worker processes (default 1: one process, no master; more: a master
 *   and that many workers, as nginx is deployed)
 */

/**
 * nginx.conf text: one single-process nginx (no master, one worker loop), no access log, every path
 * inside `dir`. Serves `body` when `upstreamPort` is not given, else proxies to the upstream.
 * @param {NginxConfigOptions} opts
 * @returns {string}
 */
export function nginxConfig({
  dir,
  port,
  body = UPSTREAM_BODY,
  upstreamPort,
  keepalive = 64,
  extraHttp = '',
  workers = 1,
}) {
  if (/['\\]/.test(body)) throw new Error('the body must not contain a quote or a backslash');
  const location =
    upstreamPort === undefined
      ? `      default_type application/json;
      return 200 '${body}';`
      : `      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";`;
  const upstream =
    upstreamPort === undefined
      ? ''
      : `  upstream backend {
    server 127.0.0.1:${upstreamPort};
    keepalive ${keepalive};
  }
`;
  return `daemon off;
master_process ${workers > 1 ? 'on' : 'off'};
worker_processes ${workers};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;

events {
  worker_connections 4096;
}

http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
${extraHttp}
${upstream}
  server {
    listen 127.0.0.1:${port};
    location / {
${location}
    }
  }
}
`;
}

/**
 * @typedef {object} NginxHandle
 * @property {string} url
 * @property {number} port
 * @property {string} dir
 * @property {import('./proc.js').ProcessHandle} proc
 * @property {() => Promise<void>} stop
 */

/**
 * Starts nginx with its own config in a fresh temporary directory and waits until it listens.
 * @param {Omit<NginxConfigOptions, 'dir' | 'port'> & { name?: string, port?: number, cpu?: number | string | null }} opts
 * @returns {Promise<NginxHandle>}
 */
export async function startNginx(opts = {}) {
  const bin = which('nginx');
  if (!bin) throw new Error('nginx is not installed');
  const name = opts.name ?? 'nginx';
  const dir = makeTempDir(`gatehouse-bench-${name}-`);
  const port = opts.port ?? (await freePort());
  const conf = path.join(dir, 'nginx.conf');
  writeFileSync(conf, nginxConfig({ ...opts, dir, port }));
  const errorLog = path.join(dir, 'error.log');
  const proc = spawnProcess({ name, cmd: bin, args: ['-p', dir, '-c', conf, '-e', errorLog], cpu: opts.cpu });
  try {
    await waitForPort(port, { isAlive: proc.running, what: name });
  } catch (err) {
    await proc.stop();
    let log = '';
    try {
      log = readFileSync(errorLog, 'utf8');
    } catch {
      // no log written
    }
    throw new Error(`${err instanceof Error ? err.message : err}\n${proc.output()}${log}`.trim());
  }
  return { url: `http://127.0.0.1:${port}/`, port, dir, proc, stop: () => proc.stop() };
}
