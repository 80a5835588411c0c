// Peer for the benchmark: fast-gateway 3 (restana + fast-proxy-lite, keep-alive http.Agent), one
// route for every path. (fast-gateway 5 needs Node 24: its restana 6 declares engines >=24.)
// Usage: node peers/fast-gateway.js --port 8080 --target http://127.0.0.1:8081
import { parseArgs } from 'node:util';
import gateway from 'fast-gateway';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    target: { type: 'string' },
  },
});
if (!values.port || !values.target) {
  console.error('usage: node peers/fast-gateway.js --port PORT --target http://HOST:PORT');
  process.exit(2);
}
const server = gateway({ routes: [{ prefix: '', target: values.target.replace(/\/$/, '') }] });
await server.start(Number(values.port), values.host);
console.log(`fast-gateway peer listening on http://${values.host}:${values.port} -> ${values.target}`);
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    void server.close();
    process.exit(0);
  });
}
