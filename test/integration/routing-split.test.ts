/**
 * Weighted and canary routing through the real gateway: the split over 10 000 requests (a
 * smooth weighted round robin: exact for every whole cycle of the weights), visible in
 * gatehouse_requests_total{service}; canary rules by header and by cookie, for plain requests
 * and upgrades; `sticky: consumer` by consumer id and, anonymous, by client address, the same on
 * two gateway processes started with the same config.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { AUDIENCE, ISSUER, makeKey, sign, type TestKey } from '../helpers/jwks.js';
import { startUpstream, type Handler, type Upstream } from '../helpers/upstream.js';
import { startInstances, stopProcess, type Instance } from './api-keys-processes.js';

/** answers with its own name */
const named =
  (name: string): Handler =>
  (req, res) => {
    req.resume();
    req.on('end', () => res.end(name));
  };

let v1: Upstream;
let v2: Upstream;
let key: TestKey;
let pem: string;

beforeAll(async () => {
  [v1, v2, key] = await Promise.all([
    startUpstream(named('orders')),
    startUpstream(named('orders-v2')),
    makeKey('k1'),
  ]);
  pem = join(mkdtempSync(join(tmpdir(), 'gatehouse-pem-')), 'key.pem');
  writeFileSync(pem, key.publicPem);
}, 30_000);
afterAll(async () => {
  await v1?.close();
  await v2?.close();
});

const config = () => `
trustedProxies: [127.0.0.1]
auth:
  jwt: { algorithms: [RS256], issuer: "${ISSUER}", audience: ${AUDIENCE}, publicKeys: ["${pem}"] }
services:
  orders: { targets: ["${v1.url}"] }
  orders-v2: { targets: ["${v2.url}"] }
routes:
  - name: orders
    match: { path: /orders/** }
    services: [{ name: orders-v2, weight: 5 }, { name: orders, weight: 95 }]
    canary:
      - { header: x-canary, value: always, service: orders-v2 }
      - { cookie: canary, value: always, service: orders-v2 }
  - name: sticky
    match: { path: /sticky/** }
    services: [{ name: orders, weight: 70 }, { name: orders-v2, weight: 30 }]
    sticky: consumer
  - name: sticky-auth
    match: { path: /me/** }
    auth: [jwt]
    services: [{ name: orders, weight: 50 }, { name: orders-v2, weight: 50 }]
    sticky: consumer
  - name: ws
    match: { path: /ws/** }
    service: orders
    canary: [{ header: x-canary, value: always, service: orders-v2 }]
`;

async function text(base: string, path: string, headers: Record<string, string> = {}): Promise<string> {
  const res = await fetch(`${base}${path}`, { headers });
  const body = await res.text();
  if (res.status !== 200) throw new Error(`${path}: ${res.status} ${body}`);
  return body;
}

describe('weighted and canary routing (one gateway)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startGateway(config());
  });
  afterAll(() => gw?.close());

  it('splits 10 000 requests by the weights, within 1 %, and counts them by service', async () => {
    const counts = new Map<string, number>();
    for (let batch = 0; batch < 200; batch++) {
      const bodies = await Promise.all(Array.from({ length: 50 }, () => text(gw.url, '/orders/x')));
      for (const b of bodies) counts.set(b, (counts.get(b) ?? 0) + 1);
    }
    const v2Share = (counts.get('orders-v2') ?? 0) / 10_000;
    expect(Math.abs(v2Share - 0.05)).toBeLessThanOrEqual(0.01);
    expect((counts.get('orders') ?? 0) + (counts.get('orders-v2') ?? 0)).toBe(10_000);
    const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text();
    const count = (service: string) =>
      Number(
        new RegExp(
          `^gatehouse_requests_total\\{route="orders",service="${service}",method="GET",status="200"\\} (\\d+)`,
          'm',
        ).exec(metrics)?.[1],
      );
    expect(count('orders-v2')).toBe(counts.get('orders-v2'));
    expect(count('orders')).toBe(counts.get('orders'));
  }, 60_000);

  it('a canary header or cookie picks its service every time; other values take the weights', async () => {
    for (let i = 0; i < 20; i++) {
      expect(await text(gw.url, '/orders/x', { 'x-canary': 'always' })).toBe('orders-v2');
      expect(await text(gw.url, '/orders/x', { cookie: 'a=1; canary=always; b=2' })).toBe('orders-v2');
    }
    const others = new Set<string>();
    for (let i = 0; i < 20; i++) {
      others.add(await text(gw.url, '/orders/x', { 'x-canary': 'never', cookie: 'canary=alwaysx' }));
    }
    expect(others.has('orders')).toBe(true);
  });

  it('a canary header sends an upgrade to its service too', async () => {
    const before = v2.received.length;
    const socket = connect(gw.gateway.port, '127.0.0.1');
    const head = await new Promise<string>((resolve, reject) => {
      let got = '';
      socket.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (got.includes('\r\n\r\n')) resolve(got);
      });
      socket.on('error', reject);
      socket.write(
        'GET /ws/chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nx-canary: always\r\n\r\n',
      );
    });
    socket.destroy();
    expect(head).toMatch(/^HTTP\/1\.1 101/);
    expect(v2.received.slice(before).some((r) => r.url === '/ws/chat')).toBe(true);
  });

  it('sticky: one anonymous client address keeps its service; addresses spread by the weights', async () => {
    const chosen = new Map<string, string>();
    for (let i = 0; i < 200; i++) {
      const ip = `10.1.${i >> 8}.${i & 255}`;
      const first = await text(gw.url, '/sticky/x', { 'x-forwarded-for': ip });
      for (let j = 0; j < 3; j++)
        expect(await text(gw.url, '/sticky/x', { 'x-forwarded-for': ip })).toBe(first);
      chosen.set(ip, first);
    }
    const v2Count = [...chosen.values()].filter((s) => s === 'orders-v2').length;
    // 30 % of 200 addresses, with room for a hash's spread (binomial σ ≈ 6.5)
    expect(v2Count).toBeGreaterThan(30);
    expect(v2Count).toBeLessThan(90);
  });
});

describe('sticky routing across two gateway processes', () => {
  let instances: Instance[] = [];
  beforeAll(async () => {
    instances = await startInstances(
      `listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\n${config()}`,
      [{}, {}],
    );
  }, 60_000);
  afterAll(async () => {
    await Promise.all(instances.map((i) => stopProcess(i.proc)));
  });

  it('a consumer gets the same service from both processes, request after request', async () => {
    const [a, b] = instances as [Instance, Instance];
    const seen = new Set<string>();
    for (let c = 0; c < 40; c++) {
      const headers = { authorization: `Bearer ${await sign(key, { sub: `consumer-${c}` })}` };
      const first = await text(a.url, '/me/x', headers);
      seen.add(first);
      for (let j = 0; j < 5; j++) {
        expect(await text(a.url, '/me/x', headers)).toBe(first);
        expect(await text(b.url, '/me/x', headers)).toBe(first);
      }
    }
    // 40 consumers at 50/50: both services are used
    expect(seen).toEqual(new Set(['orders', 'orders-v2']));
  }, 60_000);
});
