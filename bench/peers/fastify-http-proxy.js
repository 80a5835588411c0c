// Peer for the benchmark: fastify 5 with @fastify/http-proxy 11 (reply-from on an undici 7 pool of
// 64 connections), no logger, one prefix for every path.
// Usage: node peers/fastify-http-proxy.js --port 8080 --target http://127.0.0.1:8081
import { parseArgs } from 'node:util';
import proxy from '@fastify/http-proxy';
import Fastify from 'fastify';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    target: { type: 'string' },
  },
});
if (!values.port || !values.target) {
  console.error('usage: node peers/fastify-http-proxy.js --port PORT --target http://HOST:PORT');
  process.exit(2);
}
const app = Fastify({ logger: false });
await app.register(proxy, {
  upstream: values.target.replace(/\/$/, ''),
  prefix: '/',
  undici: { connections: 64, pipelining: 1 },
});
await app.listen({ port: Number(values.port), host: values.host });
console.log(`fastify-http-proxy peer listening on http://${values.host}:${values.port} -> ${values.target}`);
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    void app.close();
    process.exit(0);
  });
}
