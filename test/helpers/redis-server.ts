/**
 * Private `redis-server` processes for tests: one on a free loopback port, nothing persisted,
 * never the shared Redis on 6379. For faults it can be stopped (SIGTERM) or killed (SIGKILL, like
 * a crash) and started again on the same port, or frozen (SIGSTOP: the socket stays open and
 * accepts commands that are never answered) and thawed (SIGCONT). A Redis Cluster
 * (redis-cluster.ts) is made of these. Every server still running when the test process exits
 * is killed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

export const HOST = '127.0.0.1';

export type RedisServer = {
  readonly port: number;
  readonly url: string;
  /** the server's log so far (for error messages) */
  output(): string;
  /** a client of this server (disconnected by `close`, or earlier by the caller) */
  client(): Redis;
  /** `INFO commandstats` calls of one command, e.g. evalsha */
  calls(command: string): Promise<number>;
  /** SIGTERM (SIGKILL after 5 s), resolved once it has exited */
  stop(): Promise<void>;
  /** SIGKILL, like a crash, resolved once it has exited */
  kill(): Promise<void>;
  /** starts it again on the same port with the same arguments (no data: nothing is persisted) */
  start(): Promise<void>;
  /** `stop` then `start` */
  restart(): Promise<void>;
  /** SIGSTOP: connections stay open, nothing is answered */
  freeze(): void;
  /** SIGCONT */
  thaw(): void;
  /** disconnects the clients, stops the server and removes its directory if it made one */
  close(): Promise<void>;
};

export type RedisServerOptions = {
  /** where the server may write (cluster state); a temporary directory of its own by default */
  dir?: string;
  /** more `redis-server` arguments, given the port */
  args?: (port: number) => string[];
  /** also needs port + 10000 free (a cluster node's bus port) */
  clusterBus?: boolean;
};

/** Servers still running: killed if the test process exits without closing them. */
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

function listenOnce(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(null));
    server.listen(port, HOST, () => {
      const address = server.address();
      const got = typeof address === 'object' && address !== null ? address.port : null;
      server.close(() => resolve(got));
    });
  });
}

/** A free port; with `bus`, port + 10000 (the cluster bus) is free too. */
async function freePort(bus: boolean): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await listenOnce(0);
    if (port === null) continue;
    if (!bus) return port;
    if (port + 10000 > 65535) continue;
    if ((await listenOnce(port + 10000)) !== null) return port;
  }
  throw new Error('redis test helper: no free port found');
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

async function signalAndWait(child: ChildProcess, signal: 'SIGTERM' | 'SIGKILL', timeoutMs = 5000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = exited(child);
  child.kill(signal);
  child.kill('SIGCONT'); // a frozen process acts on the signal only once it runs
  let timer: NodeJS.Timeout | undefined;
  const killed = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      child.kill('SIGKILL');
      resolve();
    }, timeoutMs);
  });
  await Promise.race([done, killed]);
  clearTimeout(timer);
  await done;
}

export function missingBinary(name: string, err: NodeJS.ErrnoException): Error {
  return err.code === 'ENOENT'
    ? new Error(`${name} not found: install the Debian package redis-server (scripts/test-deps.sh)`)
    : err;
}

type Launched = { child: ChildProcess; output(): string };

/** Starts redis-server with `args` and resolves once it accepts connections on `port`. */
async function launch(port: number, args: string[]): Promise<Launched> {
  const child = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  child.once('exit', () => running.delete(child));
  let out = '';
  const started = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`redis-server on port ${port} not ready after 10 s:\n${out}`)),
      10_000,
    );
    const onData = (d: Buffer) => {
      out += d.toString();
      if (/Ready to accept connections/.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(missingBinary('redis-server', err));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`redis-server on port ${port} exited (${code ?? signal}) before ready:\n${out}`));
    });
  });
  try {
    await started;
  } catch (err) {
    await signalAndWait(child, 'SIGKILL');
    throw err;
  }
  return { child, output: () => out };
}

/** One private redis-server on a free loopback port (another one if it loses a race for it). */
export async function startRedisServer(options: RedisServerOptions = {}): Promise<RedisServer> {
  const ownDir = options.dir === undefined ? mkdtempSync(join(tmpdir(), 'gatehouse-redis-')) : null;
  const dir = options.dir ?? ownDir!;
  const removeDir = () => {
    if (ownDir !== null) rmSync(ownDir, { recursive: true, force: true });
  };
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort(options.clusterBus === true);
    const args = [
      '--port',
      String(port),
      '--bind',
      HOST,
      '--save',
      '',
      '--appendonly',
      'no',
      '--daemonize',
      'no',
      '--dir',
      dir,
      '--dbfilename',
      `dump-${port}.rdb`,
      ...(options.args?.(port) ?? []),
    ];
    let current: Launched | null;
    try {
      current = await launch(port, args);
    } catch (err) {
      lastError = err as Error;
      if (/Address already in use/i.test(lastError.message)) continue; // lost a race: another port
      removeDir();
      throw lastError;
    }
    const clients = new Set<Redis>();
    const newClient = (opts: { lazy?: boolean } = {}) => {
      const c = new Redis({
        host: HOST,
        port,
        ...(opts.lazy ? { lazyConnect: true, retryStrategy: () => null } : { maxRetriesPerRequest: 1 }),
      });
      c.on('error', () => undefined); // a stopped server: commands fail, no stderr noise
      clients.add(c);
      c.once('end', () => clients.delete(c));
      return c;
    };
    const stopWith = async (signal: 'SIGTERM' | 'SIGKILL') => {
      const launched = current;
      current = null;
      if (launched) await signalAndWait(launched.child, signal);
    };
    const start = async () => {
      if (current) throw new Error(`redis-server on port ${port} already running`);
      current = await launch(port, args);
    };
    let log = '';
    const output = () => current?.output() ?? log;
    return {
      port,
      url: `redis://${HOST}:${port}`,
      output,
      client: () => newClient(),
      async calls(command) {
        const c = newClient({ lazy: true });
        try {
          await c.connect();
          const info = await c.info('commandstats');
          const m = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(info);
          return Number(m?.[1] ?? 0);
        } finally {
          c.disconnect();
        }
      },
      stop: async () => {
        log = output();
        await stopWith('SIGTERM');
      },
      kill: async () => {
        log = output();
        await stopWith('SIGKILL');
      },
      start,
      async restart() {
        log = output();
        await stopWith('SIGTERM');
        await start();
      },
      freeze: () => void current?.child.kill('SIGSTOP'),
      thaw: () => void current?.child.kill('SIGCONT'),
      async close() {
        for (const c of clients) c.disconnect();
        clients.clear();
        await stopWith('SIGTERM');
        removeDir();
      },
    };
  }
  removeDir();
  throw lastError ?? new Error('redis-server did not start');
}
