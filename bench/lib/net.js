// Loopback helpers: free ports, waiting for a port or an HTTP status, one-off GET requests.
import http from 'node:http';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * A TCP port that is free on the host right now (the OS picks it).
 * @param {string} [host]
 * @returns {Promise<number>}
 */
export function freePort(host = '127.0.0.1') {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/**
 * @param {number} port
 * @param {string} host
 * @returns {Promise<boolean>}
 */
function tryConnect(port, host) {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host });
    socket.setTimeout(1000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * @typedef {object} WaitOptions
 * @property {string} [host]
 * @property {number} [timeoutMs]
 * @property {number} [intervalMs]
 * @property {() => boolean} [isAlive]  when it returns false, waiting stops at once (the server died)
 * @property {string} [what]  label for error messages
 */

/**
 * Polls until something accepts TCP connections on the port.
 * @param {number} port
 * @param {WaitOptions} [opts]
 */
export async function waitForPort(port, opts = {}) {
  const { host = '127.0.0.1', timeoutMs = 10_000, intervalMs = 50, isAlive = () => true } = opts;
  const what = opts.what ?? `${host}:${port}`;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!isAlive()) throw new Error(`${what} exited before accepting connections`);
    if (await tryConnect(port, host)) return;
    await sleep(intervalMs);
  }
  throw new Error(`${what} did not accept connections within ${timeoutMs} ms`);
}

/**
 * @typedef {object} HttpResponse
 * @property {number} status
 * @property {import('node:http').IncomingHttpHeaders} headers
 * @property {string} body
 */

/**
 * One GET request on a fresh connection.
 * @param {string} url
 * @param {{ headers?: Record<string, string>, timeoutMs?: number }} [opts]
 * @returns {Promise<HttpResponse>}
 */
export function httpGet(url, { headers = {}, timeoutMs = 2000 } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/**
 * Polls a URL until it answers with the expected status.
 * @param {string} url
 * @param {WaitOptions & { status?: number }} [opts]
 */
export async function waitForHttp(url, opts = {}) {
  const { status = 200, timeoutMs = 30_000, intervalMs = 100, isAlive = () => true } = opts;
  const what = opts.what ?? url;
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (!isAlive()) throw new Error(`${what} exited before ${url} answered ${status} (last: ${last})`);
    try {
      const res = await httpGet(url, { timeoutMs: 1000 });
      if (res.status === status) return;
      last = `status ${res.status}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await sleep(intervalMs);
  }
  throw new Error(`${url} did not answer ${status} within ${timeoutMs} ms (last: ${last})`);
}
