// Peer for the benchmark: the usual Node reverse proxy, http-proxy 1.18 with a keep-alive agent.
// Usage: node peers/http-proxy.js --port 8080 --target http://127.0.0.1:8081
import http from 'node:http';
import { parseArgs } from 'node:util';
import httpProxy from 'http-proxy';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    target: { type: 'string' },
  },
});
if (!values.port || !values.target) {
  console.error('usage: node peers/http-proxy.js --port PORT --target http://HOST:PORT [--host 127.0.0.1]');
  process.exit(2);
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const proxy = httpProxy.createProxyServer({ target: values.target, agent });
proxy.on('error', (err, _req, res) => {
  // res is a ServerResponse for proxy.web (a Socket only for websockets, unused here).
  if ('writeHead' in res && !res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
  res.end(`bad gateway: ${err.message}\n`);
});

const server = http.createServer((req, res) => proxy.web(req, res));
server.listen(Number(values.port), values.host, () => {
  console.log(`http-proxy peer listening on http://${values.host}:${values.port} -> ${values.target}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    agent.destroy();
    process.exit(0);
  });
}
