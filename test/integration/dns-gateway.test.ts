/**
 * DNS discovery through the real gateway: a private dnsmasq on loopback answers for the
 * services' names, and the records point at upstreams listening on 127.0.0.2, 127.0.0.3 and
 * 127.0.0.4 (all loopback on Linux). Requests must reach the discovered targets, follow record
 * changes without a single failed request, keep going on the last known targets when DNS dies,
 * and `GET /services` must list what was discovered. Lookups run every 200 ms.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDnsmasq, type PrivateDnsmasq } from '../helpers/dnsmasq.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { expectProblem, request } from '../helpers/http-client.js';
import { answers, serviceView, sleep, tally, waitFor } from '../helpers/observe.js';

const ADDRESSES = ['127.0.0.2', '127.0.0.3', '127.0.0.4'] as const;
const SRV_NAME = '_http._tcp.srv.test';

/** Upstreams on each of `ADDRESSES` with one port; each answers its own address. */
type Upstreams = { port: number; hits: Map<string, number>; close(): Promise<void> };

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** A node:http server on `host` answering `host` in the body, counting requests in `hits`. */
function addressServer(host: string, hits: Map<string, number>): Server {
  return createServer((req, res) => {
    req.resume();
    hits.set(host, (hits.get(host) ?? 0) + 1);
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(host);
  });
}

async function startUpstreams(): Promise<Upstreams> {
  const hits = new Map<string, number>();
  // the same port on every address: a free port on the first may be taken on another, so retry
  for (let attempt = 1; ; attempt++) {
    const servers = ADDRESSES.map((a) => addressServer(a, hits));
    try {
      await listen(servers[0] as Server, ADDRESSES[0], 0);
      const port = ((servers[0] as Server).address() as AddressInfo).port;
      for (let i = 1; i < servers.length; i++)
        await listen(servers[i] as Server, ADDRESSES[i] as string, port);
      return {
        port,
        hits,
        close: async () => {
          await Promise.all(
            servers.map(
              (s) =>
                new Promise<void>((resolve) => {
                  s.closeAllConnections();
                  s.close(() => resolve());
                }),
            ),
          );
        },
      };
    } catch (err) {
      for (const s of servers) if (s.listening) s.close();
      if (attempt === 5) throw err;
    }
  }
}

describe('DNS discovery through the gateway', () => {
  let dns: PrivateDnsmasq;
  let ups: Upstreams;
  let other: { server: Server; port: number };
  let gw: TestGateway;
  const hosts: Record<string, string[]> = {
    'svc.test': ['127.0.0.2', '127.0.0.3'],
    'a.srv.test': ['127.0.0.2'],
    'c.srv.test': ['127.0.0.1'],
    'partial.test': ['127.0.0.3'],
  };

  beforeAll(async () => {
    ups = await startUpstreams();
    // an SRV target with a port of its own
    const server = addressServer('127.0.0.1', ups.hits);
    await listen(server, '127.0.0.1', 0);
    other = { server, port: (server.address() as AddressInfo).port };
    dns = await startDnsmasq({
      hosts,
      // AAAA for this name is refused, as by a dnsmasq without upstream servers
      unanswered: ['partial.test'],
      srv: [
        { name: SRV_NAME, target: 'a.srv.test', port: ups.port },
        { name: SRV_NAME, target: 'c.srv.test', port: other.port },
      ],
    });
    gw = await startGateway(`
dns: { servers: ["${dns.server}"], timeout: 200ms }
services:
  svc: { discovery: { dns: svc.test, port: ${ups.port}, refresh: 200ms } }
  srv: { discovery: { dns: ${SRV_NAME}, refresh: 200ms } }
  none: { discovery: { dns: nothing-here.test, port: ${ups.port}, refresh: 200ms } }
  partial: { discovery: { dns: partial.test, port: ${ups.port}, refresh: 200ms } }
routes:
  - { name: svc, match: { path: /svc/** }, service: svc }
  - { name: srv, match: { path: /srv/** }, service: srv }
  - { name: none, match: { path: /none/** }, service: none }
  - { name: partial, match: { path: /partial/** }, service: partial }
`);
  });
  afterEach(async () => {
    if (!dns.running) await dns.start();
  });
  afterAll(async () => {
    await gw?.close();
    await dns?.close();
    await ups?.close();
    other?.server.closeAllConnections();
    await new Promise<void>((resolve) => (other ? other.server.close(() => resolve()) : resolve()));
  });

  const hitsOf = (host: string) => ups.hits.get(host) ?? 0;
  const origin = (host: string, port = ups.port) => `http://${host}:${port}`;
  const targetsOf = async (service: string) => (await serviceView(gw, service)).targets.map((t) => t.target);

  it('A records: requests reach the discovered targets, and GET /services lists them', async () => {
    const view = await serviceView(gw, 'svc');
    expect(view.discovery).toEqual({ dns: 'svc.test' });
    expect(view.targets.map((t) => t.target)).toEqual([origin('127.0.0.2'), origin('127.0.0.3')]);
    expect(view.targets.every((t) => t.healthy)).toBe(true);
    expect(tally(await answers(`${gw.url}/svc/x`, 10))).toEqual({ '127.0.0.2': 5, '127.0.0.3': 5 });
  });

  it('records change under a steady trickle: new targets get traffic, removed ones none, nothing fails', async () => {
    const statuses: number[] = [];
    let running = true;
    const trickle = async () => {
      while (running) {
        const r = await request(`${gw.url}/svc/x`);
        statuses.push(r.status);
        await sleep(5);
      }
    };
    const loops = [trickle(), trickle()];
    await sleep(100);
    hosts['svc.test'] = ['127.0.0.3', '127.0.0.4'];
    await dns.setHosts(hosts);
    await waitFor(() => hitsOf('127.0.0.4') > 0, 'traffic on the added target');
    const expected = [origin('127.0.0.3'), origin('127.0.0.4')];
    await waitFor(
      async () => JSON.stringify(await targetsOf('svc')) === JSON.stringify(expected),
      'the new list',
    );
    await sleep(200); // keep the trickle going a little after the change
    running = false;
    await Promise.all(loops);
    expect(statuses.length).toBeGreaterThanOrEqual(20);
    expect(statuses.filter((s) => s !== 200)).toEqual([]);

    const removed = hitsOf('127.0.0.2');
    expect(tally(await answers(`${gw.url}/svc/x`, 10))).toEqual({ '127.0.0.3': 5, '127.0.0.4': 5 });
    expect(hitsOf('127.0.0.2')).toBe(removed);
  });

  it("SRV records: each target with its record's port", async () => {
    expect(await targetsOf('srv')).toEqual([origin('127.0.0.1', other.port), origin('127.0.0.2')]);
    expect(tally(await answers(`${gw.url}/srv/x`, 10))).toEqual({ '127.0.0.1': 5, '127.0.0.2': 5 });
  });

  it('A answered, AAAA refused by the resolver: the A targets serve (not 503 no_healthy_target)', async () => {
    expect(await targetsOf('partial')).toEqual([origin('127.0.0.3')]);
    expect(tally(await answers(`${gw.url}/partial/x`, 4))).toEqual({ '127.0.0.3': 4 });
  });

  it('a name without records: 503 no_healthy_target', async () => {
    expect(await targetsOf('none')).toEqual([]);
    const r = await request(`${gw.url}/none/x`);
    expectProblem(r, 503, 'no_healthy_target');
    expect(r.headers['retry-after']).toBe('1');
  });

  it('DNS server killed: traffic continues to the last known targets', async () => {
    const before = await targetsOf('svc');
    expect(before).toEqual([origin('127.0.0.3'), origin('127.0.0.4')]);
    const queries = dns.queries('svc.test');
    await dns.stop();
    // several refresh periods of failed lookups (each gives up after its 200 ms timeout, twice)
    await sleep(1500);
    expect(tally(await answers(`${gw.url}/svc/x`, 10))).toEqual({ '127.0.0.3': 5, '127.0.0.4': 5 });
    expect(tally(await answers(`${gw.url}/srv/x`, 4))).toEqual({ '127.0.0.1': 2, '127.0.0.2': 2 });
    expect(await targetsOf('svc')).toEqual(before);
    expect(dns.queries('svc.test')).toBe(queries); // nothing answered meanwhile

    // back, with a change made while it was down: picked up
    hosts['svc.test'] = ['127.0.0.2'];
    await dns.setHosts(hosts);
    await dns.start();
    await waitFor(
      async () => JSON.stringify(await targetsOf('svc')) === JSON.stringify([origin('127.0.0.2')]),
      'the list from the restarted server',
    );
    expect(tally(await answers(`${gw.url}/svc/x`, 4))).toEqual({ '127.0.0.2': 4 });
  });
});
