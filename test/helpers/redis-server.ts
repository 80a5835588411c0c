/**
 * Private `redis-server` processes for fault tests: started on a free loopback port, stopped
 * (SIGKILL, like a crash) and started again on the same port, or frozen (SIGSTOP: the socket
 * stays open and accepts commands that are never answered) and thawed (SIGCONT).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { Redis } from 'ioredis';

export type PrivateRedis = {
  readonly port: number;
  readonly url: string;
  /** kills the server (SIGKILL) and waits until it has exited */
  stop(): Promise<void>;
  /** starts it again on the same port (data is gone: no persistence) */
  start(): Promise<void>;
  /** SIGSTOP: connections stay open, nothing is answered */
  freeze(): void;
  thaw(): void;
  /** a client of this server for assertions (closed by `close`) */
  client(): Redis;
  /** `INFO commandstats` calls of one command, e.g. evalsha */
  calls(command: string): Promise<number>;
  close(): Promise<void>;
};

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  const clients: Redis[] = [];

  const start = async () => {
    if (child) throw new Error('redis-server already running');
    const proc = spawn(
      'redis-server',
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--daemonize',
        'no',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    child = proc;
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`redis-server exited on port ${port}:\n${out}`);
      const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null });
      probe.on('error', () => undefined);
      try {
        await probe.connect();
        if ((await probe.ping()) === 'PONG') return;
      } catch {
        // not listening yet
      } finally {
        probe.disconnect();
      }
      if (Date.now() > deadline) throw new Error(`redis-server did not start on port ${port}:\n${out}`);
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  const stop = async () => {
    const proc = child;
    if (!proc) return;
    child = null;
    proc.kill('SIGCONT'); // a frozen process dies only once it runs
    proc.kill('SIGKILL');
    await exited;
  };

  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    start,
    stop,
    freeze: () => child?.kill('SIGSTOP'),
    thaw: () => child?.kill('SIGCONT'),
    client() {
      const c = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
      c.on('error', () => undefined);
      clients.push(c);
      return c;
    },
    async calls(command) {
      const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null });
      c.on('error', () => undefined);
      try {
        await c.connect();
        const info = await c.info('commandstats');
        const m = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info);
        return Number(m?.[1] ?? 0);
      } finally {
        c.disconnect();
      }
    },
    async close() {
      for (const c of clients.splice(0)) c.disconnect();
      await stop();
    },
  };
}
