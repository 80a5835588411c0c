#!/usr/bin/env node
// An upstream for the soak, run as its own process so that the soak can kill it. It answers by
// the end of the path, whatever comes before:
//   …/status/<code>  -> <code> with a small JSON body (500, 502: the 5xx the soak expects)
//   …/slow           -> 200 after --slow-ms (default 2000): longer than the route's response
//                       timeout, so the gateway answers 504 and closes the connection
//   GET /__stats     -> {"requests":n} (requests answered, /__stats excluded)
//   anything else    -> 200 {"ok":true,"target":"<name>"} (a POST body is read first)
//
//   node soak-upstream.js --port <port> --name <name> [--slow-ms <ms>]
import http from 'node:http';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { port: { type: 'string' }, name: { type: 'string' }, 'slow-ms': { type: 'string' } },
});
const port = Number(values.port);
const name = values.name ?? 'upstream';
const slowMs = Number(values['slow-ms'] ?? 2000);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node soak-upstream.js --port <port> --name <name> [--slow-ms <ms>]');
  process.exit(2);
}
const okBody = JSON.stringify({ ok: true, target: name });
let requests = 0;

/**
 * @param {import('node:http').ServerResponse} res
 * @param {number} status
 * @param {string} body
 */
function send(res, status, body) {
  if (res.destroyed) return;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

const server = http.createServer((req, res) => {
  const path = (req.url ?? '/').split('?')[0] ?? '/';
  if (path === '/__stats') return send(res, 200, JSON.stringify({ requests }));
  req.resume();
  req.on('end', () => {
    requests++;
    const status = /\/status\/(\d{3})$/.exec(path);
    if (status) return send(res, Number(status[1]), `{"error":"status ${status[1]}","target":"${name}"}`);
    if (path.endsWith('/slow')) {
      const timer = setTimeout(() => send(res, 200, okBody), slowMs);
      res.on('close', () => clearTimeout(timer));
      return;
    }
    send(res, 200, okBody);
  });
});
server.keepAliveTimeout = 60_000;
server.listen(port, '127.0.0.1');
for (const signal of /** @type {const} */ (['SIGTERM', 'SIGINT'])) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
  });
}
