/**
 * A private dnsmasq for discovery tests: a real DNS server on a free loopback port (UDP and TCP),
 * answering only from its own records. A/AAAA records live in a hosts file (changed by rewriting
 * it and sending SIGHUP); SRV records are command-line options (changed by restarting on the same
 * port). `--local=/#/` makes every name local, so unknown names get NXDOMAIN and a name with
 * records of the other family gets NODATA instead of REFUSED (there is no upstream to ask).
 * Names listed in `unanswered` are not local: dnsmasq answers what its hosts file has for them
 * and refuses the rest (REFUSED for the other family), like a dnsmasq without upstream servers.
 * Queries are logged to stderr and counted per name. Every process started is killed by `close`,
 * and by a process exit hook should a test file die first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const DNSMASQ = '/usr/sbin/dnsmasq';

export type SrvRecordSpec = {
  readonly name: string;
  readonly target: string;
  readonly port: number;
  readonly priority?: number;
  readonly weight?: number;
};

export type DnsRecords = {
  /** name → addresses (IPv4 and IPv6 alike) */
  readonly hosts?: Readonly<Record<string, readonly string[]>>;
  readonly srv?: readonly SrvRecordSpec[];
  /** names whose queries the hosts file cannot answer are REFUSED, not NODATA or NXDOMAIN */
  readonly unanswered?: readonly string[];
};

export type PrivateDnsmasq = {
  readonly port: number;
  /** for `dns.servers`: "127.0.0.1:port" */
  readonly server: string;
  /** the arguments of the running (or last) process */
  readonly args: readonly string[];
  /** false between `stop` and `start` */
  readonly running: boolean;
  /** rewrites the hosts file, sends SIGHUP and waits until dnsmasq has read it */
  setHosts(hosts: DnsRecords['hosts']): Promise<void>;
  /** restarts on the same port with these SRV records */
  setSrv(srv: DnsRecords['srv']): Promise<void>;
  /** restarts on the same port with these names unanswered (see `DnsRecords.unanswered`) */
  setUnanswered(names: DnsRecords['unanswered']): Promise<void>;
  /** queries received so far for `name` (any type), from the query log */
  queries(name: string): number;
  /** kills the server (SIGKILL) and waits until it has exited */
  stop(): Promise<void>;
  /** starts it again on the same port */
  start(): Promise<void>;
  output(): string;
  close(): Promise<void>;
};

const live = new Set<ChildProcess>();
let exitHook = false;

function killAllOnExit(): void {
  if (exitHook) return;
  exitHook = true;
  process.once('exit', () => {
    for (const child of live) child.kill('SIGKILL');
  });
}

/** A free UDP port on 127.0.0.1 (dnsmasq also needs TCP on it: a clash shows as a bind failure). */
function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    socket.once('error', reject);
    socket.bind(0, '127.0.0.1', () => {
      const { port } = socket.address();
      socket.close(() => resolve(port));
    });
  });
}

function hostsFile(hosts: DnsRecords['hosts']): string {
  const lines: string[] = [];
  for (const [name, addresses] of Object.entries(hosts ?? {})) {
    for (const address of addresses) lines.push(`${address} ${name}`);
  }
  return lines.join('\n') + '\n';
}

function srvArgs(srv: DnsRecords['srv']): string[] {
  return (srv ?? []).map(
    (r) => `--srv-host=${r.name},${r.target},${r.port},${r.priority ?? 0},${r.weight ?? 10}`,
  );
}

/** `#`: the standard servers, of which there are none (`--no-resolv`): what is not in hosts is refused */
function unansweredArgs(names: DnsRecords['unanswered']): string[] {
  return (names ?? []).map((name) => `--server=/${name}/#`);
}

class BindError extends Error {}

export async function startDnsmasq(records: DnsRecords = {}): Promise<PrivateDnsmasq> {
  killAllOnExit();
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-dnsmasq-'));
  const hostsPath = join(dir, 'hosts');
  writeFileSync(hostsPath, hostsFile(records.hosts));
  let srv = srvArgs(records.srv);
  let unanswered = unansweredArgs(records.unanswered);
  let port = 0;
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  let out = '';
  let args: string[] = [];
  // a restart's log starts empty; counts carry over from earlier processes
  let previousOut = '';

  const argsFor = (p: number) => [
    '--keep-in-foreground',
    `--port=${p}`,
    '--listen-address=127.0.0.1',
    '--bind-interfaces',
    '--no-resolv',
    '--no-hosts',
    '--conf-file=/dev/null',
    `--pid-file=${join(dir, 'dnsmasq.pid')}`,
    // as root dnsmasq would drop to "nobody", who cannot reread the hosts file in our 0700 dir
    '--user=root',
    '--local=/#/',
    '--local-ttl=1',
    `--addn-hosts=${hostsPath}`,
    '--log-queries',
    '--log-facility=-',
    ...srv,
    ...unanswered,
  ];

  const probe = async (p: number): Promise<boolean> => {
    const resolver = new Resolver({ timeout: 200, tries: 1 });
    resolver.setServers([`127.0.0.1:${p}`]);
    try {
      await resolver.resolve4('probe.gatehouse.invalid');
      return true;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ENOTFOUND';
    }
  };

  const spawnOn = async (p: number): Promise<void> => {
    args = argsFor(p);
    const proc = spawn(DNSMASQ, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    live.add(proc);
    out = '';
    proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
    let dead = false;
    exited = new Promise((resolve) => {
      const gone = () => {
        dead = true;
        live.delete(proc);
        resolve();
      };
      proc.once('exit', gone);
      proc.once('error', (err) => {
        out += String(err);
        gone();
      });
    });
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (dead) {
        child = null;
        if (/Address already in use/.test(out)) throw new BindError(out);
        throw new Error(`dnsmasq exited (${proc.exitCode ?? proc.signalCode}):\n${out}`);
      }
      if (await probe(p)) return;
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`dnsmasq did not answer on port ${p}:\n${out}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  };

  const stop = async (): Promise<void> => {
    const proc = child;
    if (!proc) return;
    child = null;
    proc.kill('SIGKILL');
    await exited;
    previousOut += out;
    out = '';
  };

  const start = async (): Promise<void> => {
    if (child) throw new Error('dnsmasq already running');
    await spawnOn(port);
  };

  for (let attempt = 1; ; attempt++) {
    port = await freeUdpPort();
    try {
      await spawnOn(port);
      break;
    } catch (err) {
      if (!(err instanceof BindError) || attempt === 5) {
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }

  const reads = () => out.split(`read ${hostsPath}`).length - 1;

  return {
    port,
    server: `127.0.0.1:${port}`,
    get args() {
      return args;
    },
    get running() {
      return child !== null;
    },
    async setHosts(hosts) {
      const tmp = `${hostsPath}.tmp`;
      writeFileSync(tmp, hostsFile(hosts));
      renameSync(tmp, hostsPath);
      const proc = child;
      if (!proc) return; // read at the next start
      const before = reads();
      proc.kill('SIGHUP');
      const deadline = Date.now() + 10_000;
      while (reads() === before) {
        if (Date.now() > deadline) throw new Error(`dnsmasq did not reread ${hostsPath}:\n${out}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async setSrv(records) {
      srv = srvArgs(records);
      if (!child) return;
      await stop();
      await start();
    },
    async setUnanswered(names) {
      unanswered = unansweredArgs(names);
      if (!child) return;
      await stop();
      await start();
    },
    queries(name) {
      const pattern = new RegExp(`query\\[[A-Z]+\\] ${name.replace(/\./g, '\\.')} from`, 'g');
      return (previousOut + out).match(pattern)?.length ?? 0;
    },
    stop,
    start,
    output: () => previousOut + out,
    async close() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
