/**
 * Ports to listen on later, picked in advance (a process that must come back on the same port
 * after a restart, a load balancer configured before its servers start). Taken at random from
 * 20000–29999, below the kernel's range for port 0 (32768 and up), so a server elsewhere that
 * listens on port 0 cannot be handed one of them meanwhile; each is checked to be bindable.
 */
import { createServer } from 'node:net';

const taken = new Set<number>();

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '127.0.0.1', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

export async function freePorts(n: number): Promise<number[]> {
  const out: number[] = [];
  while (out.length < n) {
    const port = 20000 + Math.floor(Math.random() * 10000);
    if (taken.has(port) || !(await bindable(port))) continue;
    taken.add(port);
    out.push(port);
  }
  return out;
}
