/**
 * The demo upstream `npm start` runs beside the gateway, so the README's curl lines work with
 * nothing else installed. It echoes what it received, serves a tiny item catalogue, streams,
 * sleeps and fails on request.
 */
import { createServer, type Server } from 'node:http';

const ITEMS = new Map([
  ['1', { id: '1', name: 'Gatehouse mug', price: 12 }],
  ['2', { id: '2', name: 'Gatehouse T-shirt', price: 25 }],
  ['3', { id: '3', name: 'Gatehouse sticker pack', price: 4 }],
]);

export function createDemoUpstream(instance: string): Server {
  return createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://demo.local');
    const json = (status: number, body: unknown) => {
      const text = JSON.stringify(body, null, 2) + '\n';
      res.writeHead(status, { 'content-type': 'application/json', 'x-demo-instance': instance });
      res.end(text);
    };
    const parts = url.pathname.split('/').filter(Boolean);
    if (parts[0] === 'items' && parts.length === 1) {
      if (req.method === 'POST') {
        let size = 0;
        req.on('data', (c: Buffer) => (size += c.length));
        req.on('end', () => json(201, { created: true, bytes: size, instance }));
        return;
      }
      return json(200, { items: [...ITEMS.values()], instance });
    }
    if (parts[0] === 'items' && parts.length === 2) {
      const item = ITEMS.get(parts[1] ?? '');
      return item ? json(200, { ...item, instance }) : json(404, { error: 'no such item', instance });
    }
    if (parts[0] === 'status' && parts[1])
      return json(Number(parts[1]) || 500, { status: Number(parts[1]), instance });
    if (parts[0] === 'slow') {
      const ms = Math.min(Number(url.searchParams.get('ms') ?? 1000), 60_000);
      setTimeout(() => json(200, { sleptMs: ms, instance }), ms);
      return;
    }
    if (parts[0] === 'stream') {
      const chunks = Math.min(Number(url.searchParams.get('chunks') ?? 5), 1000);
      res.writeHead(200, { 'content-type': 'text/plain', 'x-demo-instance': instance });
      let n = 0;
      const tick = setInterval(() => {
        res.write(`chunk ${++n} of ${chunks} from ${instance}\n`);
        if (n >= chunks) {
          clearInterval(tick);
          res.end();
        }
      }, 100);
      res.on('close', () => clearInterval(tick));
      return;
    }
    json(200, {
      instance,
      method: req.method,
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: req.headers,
    });
  });
}

export async function startDemoUpstreams(ports: readonly number[], host = '127.0.0.1'): Promise<Server[]> {
  return Promise.all(
    ports.map(
      (port, i) =>
        new Promise<Server>((resolve, reject) => {
          const server = createDemoUpstream(`demo-${i + 1}`);
          server.once('error', (err: NodeJS.ErrnoException) =>
            reject(
              new Error(`demo upstream could not listen on ${host}:${port}: ${err.code ?? err.message}`),
            ),
          );
          server.listen(port, host, () => resolve(server));
        }),
    ),
  );
}
