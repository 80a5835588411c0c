// Peer for the benchmark: "the obvious code" — a 40-line node:http + undici Pool reverse proxy
// (pool.request, a header copy, the body as an async iterator). Gatehouse must be leaner than
// this with routing and header handling on.
// Usage: node peers/undici-naive.js --port 8080 --target http://127.0.0.1:8081
import http from 'node:http';
import { parseArgs } from 'node:util';
import { Pool } from 'undici';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    target: { type: 'string' },
  },
});
if (!values.port || !values.target) {
  console.error('usage: node peers/undici-naive.js --port PORT --target http://HOST:PORT');
  process.exit(2);
}
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'trailer']);
const pool = new Pool(values.target, { connections: 64 });
const server = http.createServer(async (req, res) => {
  try {
    const up = await pool.request({
      path: req.url,
      method: req.method,
      headers: { 'x-forwarded-for': req.socket.remoteAddress ?? '' },
      body: req.method === 'GET' || req.method === 'HEAD' ? null : req,
    });
    const headers = {};
    for (const [k, v] of Object.entries(up.headers)) if (!HOP.has(k)) headers[k] = v;
    res.writeHead(up.statusCode, headers);
    for await (const chunk of up.body) res.write(chunk);
    res.end();
  } catch {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  }
});
server.listen(Number(values.port), values.host, () => {
  console.log(`undici-naive peer listening on http://${values.host}:${values.port} -> ${values.target}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    void pool.destroy();
    process.exit(0);
  });
}
