/**
 * DNS discovery against a real DNS server (a private dnsmasq on loopback): records added and
 * removed, AAAA, SRV, the server dying and coming back, NXDOMAIN, close(). Lookups run every
 * 250 ms; every expectation is polled for with a generous deadline.
 */
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DnsConfig, ServiceConfig } from '../../src/config/schema.js';
import { createDiscovery, type Discovery } from '../../src/upstream/discovery/index.js';
import { startDnsmasq, type PrivateDnsmasq, type SrvRecordSpec } from '../helpers/dnsmasq.js';

const REFRESH = 250;
const SRV_NAME = '_http._tcp.orders.shop.svc.cluster.local';
const POD_A = 'pod-a.orders.shop.svc.cluster.local';
const POD_B = 'pod-b.orders.shop.svc.cluster.local';
const POD_C = 'pod-c.orders.shop.svc.cluster.local';

type LogLine = { level: number; msg: string; code?: string; dns?: string; failed?: string[] };

let server: PrivateDnsmasq;
const hosts: Record<string, string[]> = {
  'two.test': ['127.0.0.2', '127.0.0.3'],
  'v6.test': ['::1'],
  [POD_A]: ['127.0.0.2'],
  [POD_B]: ['127.0.0.3'],
  [POD_C]: ['127.0.0.4'],
  'down.test': ['127.0.0.2'],
  'closed.test': ['127.0.0.2'],
  'control.test': ['127.0.0.2'],
  'partial.test': ['127.0.0.2'],
  'dual.test': ['127.0.0.2', '::1'],
};
/** names dnsmasq refuses what its hosts file cannot answer for (AAAA here), as without upstreams */
const unanswered = ['partial.test'];
const srvRecords: SrvRecordSpec[] = [
  { name: SRV_NAME, target: POD_A, port: 8081 },
  { name: SRV_NAME, target: POD_B, port: 8082 },
  // a fallback: a higher priority value, left out while the others exist
  { name: SRV_NAME, target: POD_C, port: 8083, priority: 10 },
];

const open: Discovery[] = [];
const logs: LogLine[] = [];
const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line) as LogLine) });

beforeAll(async () => {
  server = await startDnsmasq({ hosts, srv: srvRecords, unanswered });
});
afterAll(async () => {
  await server?.close();
});
afterEach(async () => {
  for (const d of open.splice(0)) d.close();
  // a test that failed while the server was down must not fail the ones after it
  if (!server.running) await server.start();
});

async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) {
      throw new Error(
        `timed out waiting for ${what}; dnsmasq output (tail):\n${server.output().slice(-2000)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

function dnsConfig(): DnsConfig {
  return { servers: [server.server], timeout: 500 };
}

/** A started discovery of `name` with every onChange recorded. */
function discover(name: string, dns: DnsConfig | undefined = dnsConfig()) {
  const config = { discovery: { dns: name, port: 8080, refresh: REFRESH, scheme: 'http' } } as ServiceConfig;
  const discovery = createDiscovery('orders', config, dns, logger);
  open.push(discovery);
  const changes: Array<readonly string[]> = [];
  discovery.start((origins) => changes.push(origins));
  return { discovery, changes, last: () => changes.at(-1) };
}

async function setHosts(name: string, addresses: string[]): Promise<void> {
  hosts[name] = addresses;
  await server.setHosts(hosts);
}

const logsFor = (name: string, level: number) => logs.filter((l) => l.dns === name && l.level === level);

describe('DNS discovery against dnsmasq', () => {
  it('A records: follows additions and removals', async () => {
    const { discovery, changes, last } = discover('two.test');
    await discovery.ready(10_000);
    expect(discovery.origins).toEqual(['http://127.0.0.2:8080', 'http://127.0.0.3:8080']);
    expect(changes).toEqual([['http://127.0.0.2:8080', 'http://127.0.0.3:8080']]);

    await setHosts('two.test', ['127.0.0.2', '127.0.0.3', '127.0.0.4']);
    await waitFor(() => changes.length === 2, 'onChange with three targets');
    expect(last()).toEqual(['http://127.0.0.2:8080', 'http://127.0.0.3:8080', 'http://127.0.0.4:8080']);

    await setHosts('two.test', ['127.0.0.2', '127.0.0.4']);
    await waitFor(() => changes.length === 3, 'onChange with two targets');
    expect(last()).toEqual(['http://127.0.0.2:8080', 'http://127.0.0.4:8080']);
    expect(discovery.origins).toEqual(last());
    expect(logsFor('two.test', 40)).toEqual([]);
  });

  it('AAAA: an IPv6 address becomes a bracketed origin', async () => {
    const { discovery } = discover('v6.test');
    await discovery.ready(10_000);
    expect(discovery.origins).toEqual(['http://[::1]:8080']);
  });

  it('SRV: each target with its own port, lowest priority only; follows record changes', async () => {
    const { discovery, changes, last } = discover(SRV_NAME);
    await discovery.ready(10_000);
    expect(discovery.origins).toEqual(['http://127.0.0.2:8081', 'http://127.0.0.3:8082']);

    // SRV records are command-line options: dnsmasq restarts on the same port
    await server.setSrv([
      { name: SRV_NAME, target: POD_A, port: 8081 },
      { name: SRV_NAME, target: POD_B, port: 9092 },
    ]);
    await waitFor(() => last()?.includes('http://127.0.0.3:9092') === true, 'the new SRV port');
    expect(last()).toEqual(['http://127.0.0.2:8081', 'http://127.0.0.3:9092']);

    // only the fallback left: it is the lowest priority now
    await server.setSrv([{ name: SRV_NAME, target: POD_C, port: 8083, priority: 10 }]);
    await waitFor(() => last()?.[0] === 'http://127.0.0.4:8083', 'the fallback target');
    expect(last()).toEqual(['http://127.0.0.4:8083']);
    // the restarts may have been seen as failed lookups (the server was briefly gone): never as empty
    expect(changes.every((c) => c.length > 0)).toBe(true);
    await server.setSrv(srvRecords);
  });

  it('server killed: keeps the last known targets without onChange; back with new records: updated', async () => {
    const { discovery, changes, last } = discover('down.test');
    await discovery.ready(10_000);
    expect(discovery.origins).toEqual(['http://127.0.0.2:8080']);

    await server.stop();
    await waitFor(() => logsFor('down.test', 40).length > 0, 'the warning');
    const warning = logsFor('down.test', 40)[0];
    expect(warning?.msg).toBe('dns discovery lookup failed; keeping the last known targets');
    expect(['ECONNREFUSED', 'ETIMEOUT']).toContain(warning?.code);
    // several more failed lookups, without news: the target list stays
    await new Promise((r) => setTimeout(r, 4 * REFRESH + 1500));
    expect(discovery.origins).toEqual(['http://127.0.0.2:8080']);
    expect(changes).toHaveLength(1);
    expect(logsFor('down.test', 40)).toHaveLength(1); // once per streak

    await setHosts('down.test', ['127.0.0.3']); // written while down, read at start
    await server.start();
    await waitFor(() => changes.length === 2, 'onChange after the restart');
    expect(last()).toEqual(['http://127.0.0.3:8080']);
    await waitFor(
      () => logsFor('down.test', 30).some((l) => l.msg === 'dns discovery lookups succeed again'),
      'the recovery log',
    );
  });

  it('NXDOMAIN: starts empty (ready resolves), picks the name up once it exists, keeps it when it goes', async () => {
    const { discovery, changes, last } = discover('later.test');
    await discovery.ready(10_000);
    expect(discovery.origins).toEqual([]);
    expect(changes).toEqual([]);
    expect(logsFor('later.test', 40).map((l) => l.code)).toEqual(['ENOTFOUND']);

    await setHosts('later.test', ['127.0.0.5']);
    await waitFor(() => changes.length === 1, 'the name to appear');
    expect(last()).toEqual(['http://127.0.0.5:8080']);

    delete hosts['later.test'];
    await server.setHosts(hosts);
    await waitFor(() => logsFor('later.test', 40).length === 2, 'a second failure streak');
    expect(discovery.origins).toEqual(['http://127.0.0.5:8080']);
    expect(changes).toHaveLength(1);
  });

  it('A answered, AAAA refused: the A targets, and one warning for the whole streak', async () => {
    const { discovery, changes, last } = discover('partial.test');
    await discovery.ready(10_000);
    expect(discovery.origins).toEqual(['http://127.0.0.2:8080']);
    const warnings = () => logsFor('partial.test', 40);
    expect(warnings()).toEqual([
      expect.objectContaining({
        code: 'EREFUSED',
        failed: ['AAAA partial.test'],
        msg: 'dns discovery lookup failed in part; using the answers, and the last known addresses of the failed queries',
      }),
    ]);

    // the A records are followed while AAAA keeps being refused, without another warning
    await setHosts('partial.test', ['127.0.0.2', '127.0.0.3']);
    await waitFor(() => changes.length === 2, 'the second A record');
    expect(last()).toEqual(['http://127.0.0.2:8080', 'http://127.0.0.3:8080']);
    expect(server.queries('partial.test')).toBeGreaterThanOrEqual(4);
    expect(warnings()).toHaveLength(1);
  });

  it('a family that starts being refused keeps its last addresses while the other is followed', async () => {
    const { discovery, last } = discover('dual.test');
    await discovery.ready(10_000);
    expect(discovery.origins).toEqual(['http://127.0.0.2:8080', 'http://[::1]:8080']);

    // the AAAA record goes, and dnsmasq now refuses AAAA for the name instead of saying NODATA
    hosts['dual.test'] = ['127.0.0.3'];
    await server.setHosts(hosts);
    await server.setUnanswered([...unanswered, 'dual.test']);
    try {
      await waitFor(() => last()?.[0] === 'http://127.0.0.3:8080', 'the new A record');
      expect(last()).toEqual(['http://127.0.0.3:8080', 'http://[::1]:8080']);
      await waitFor(
        () => logsFor('dual.test', 40).some((l) => l.failed?.includes('AAAA dual.test') === true),
        'the partial failure warning',
      );
    } finally {
      await server.setUnanswered(unanswered);
    }
  });

  it('close() stops the lookups: no more queries, no onChange', async () => {
    const closed = discover('closed.test');
    const control = discover('control.test');
    await Promise.all([closed.discovery.ready(10_000), control.discovery.ready(10_000)]);
    closed.discovery.close();

    // a few control lookups later, whatever the closed one had in flight has reached the server
    const settle = async () => {
      const target = server.queries('control.test') + 6;
      await waitFor(() => server.queries('control.test') >= target, 'three more control lookups');
    };
    await settle();
    const queriesAfterClose = server.queries('closed.test');

    hosts['closed.test'] = ['127.0.0.6'];
    await setHosts('control.test', ['127.0.0.6']);
    await waitFor(() => control.changes.length === 2, 'the control discovery to see the change');
    await settle();
    expect(server.queries('closed.test')).toBe(queriesAfterClose);
    expect(closed.changes).toEqual([['http://127.0.0.2:8080']]);
    expect(closed.discovery.origins).toEqual(['http://127.0.0.2:8080']);
  });
});
