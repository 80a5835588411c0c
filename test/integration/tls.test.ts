/**
 * TLS termination through the real gateway: certificates by SNI, the TLS version floor, failed
 * handshakes counted, the cleartext listener's redirect, client certificates (mTLS) as the
 * consumer for RBAC, and certificates re-read (file change, POST /reload) while connections
 * made with the old ones carry on.
 */
import { copyFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { join } from 'node:path';
import { connect as netConnect } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../src/config/load.js';
import { formatProblem } from '../../src/config/problems.js';
import { Gateway } from '../../src/server/gateway.js';
import { TestPki, type Issued } from '../helpers/certificates.js';
import { startGateway, TestGateway } from '../helpers/gateway.js';
import { ProtocolClients } from '../helpers/protocol-clients.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

let pki: TestPki;
let upstream: Upstream;
let main: Issued;
let api: Issued;
let wild: Issued;
let gw: TestGateway | null = null;

beforeAll(async () => {
  pki = new TestPki();
  main = pki.server(['localhost']);
  api = pki.server(['api.test']);
  wild = pki.server(['*.wild.test']);
  upstream = await startUpstream();
});

afterEach(async () => {
  await gw?.close();
  gw = null;
});

afterAll(async () => {
  await upstream.close();
  pki.remove();
});

const services = () => `
services:
  echo: { targets: ["${upstream.url}"] }
routes:
  - { name: public, match: { path: /public/** }, service: echo }
`;

/** The certificate the gateway presents for `servername` (and how the handshake ended). */
function handshake(
  port: number,
  options: ConnectionOptions = {},
): Promise<
  { ok: true; fingerprint: string; cn: string; protocol: string | null } | { ok: false; error: string }
> {
  return new Promise((resolve) => {
    const socket = tlsConnect({
      host: '127.0.0.1',
      port,
      ca: pki.ca.certPem,
      servername: 'localhost',
      ALPNProtocols: ['http/1.1'],
      ...options,
    });
    socket.once('secureConnect', () => {
      const cert = socket.getPeerCertificate();
      resolve({
        ok: true,
        fingerprint: cert.fingerprint256,
        cn: String(cert.subject.CN),
        protocol: socket.getProtocol(),
      });
      socket.end();
    });
    socket.once('error', (err: NodeJS.ErrnoException) =>
      resolve({ ok: false, error: err.code ?? err.message }),
    );
  });
}

async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`${gw!.adminUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('certificates by SNI', () => {
  it('the name the client asks for picks the certificate; the default answers the rest', async () => {
    gw = await startGateway(`
listen:
  host: 127.0.0.1
  port: 0
  tls:
    cert: "${main.cert}"
    key: "${main.key}"
    certificates:
      - { cert: "${api.cert}", key: "${api.key}" }
      - { cert: "${wild.cert}", key: "${wild.key}", serverNames: ["*.wild.test", "other.test"] }
${services()}`);
    const port = gw.gateway.port;
    expect(await handshake(port, { servername: 'localhost' })).toMatchObject({ ok: true, cn: 'localhost' });
    expect(await handshake(port, { servername: 'api.test' })).toMatchObject({ ok: true, cn: 'api.test' });
    expect(await handshake(port, { servername: 'API.TEST' })).toMatchObject({ ok: true, cn: 'api.test' });
    expect(await handshake(port, { servername: 'a.wild.test' })).toMatchObject({
      ok: true,
      cn: '*.wild.test',
    });
    // one label only, as a wildcard certificate matches
    expect(
      await handshake(port, { servername: 'a.b.wild.test', checkServerIdentity: () => undefined }),
    ).toMatchObject({
      ok: true,
      cn: 'localhost',
    });
    expect(
      await handshake(port, { servername: 'other.test', checkServerIdentity: () => undefined }),
    ).toMatchObject({
      ok: true,
      cn: '*.wild.test',
    });
    expect(
      await handshake(port, { servername: 'unknown.test', checkServerIdentity: () => undefined }),
    ).toMatchObject({
      ok: true,
      cn: 'localhost',
    });
  });
});

describe('versions and failed handshakes', () => {
  it('TLS 1.2 and 1.3 by default; minVersion TLSv1.3 refuses 1.2; failures are counted by reason', async () => {
    gw = await startGateway(`
listen: { host: 127.0.0.1, port: 0, tls: { cert: "${main.cert}", key: "${main.key}" } }
${services()}`);
    expect(await handshake(gw.gateway.port, { maxVersion: 'TLSv1.2' })).toMatchObject({
      ok: true,
      protocol: 'TLSv1.2',
    });
    expect(await handshake(gw.gateway.port)).toMatchObject({ ok: true, protocol: 'TLSv1.3' });
    // only weak TLS 1.2 ciphers offered: none is accepted
    const weak = await handshake(gw.gateway.port, { maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA' });
    expect(weak.ok).toBe(false);
    await expect
      .poll(() => metric('gatehouse_tls_handshake_failures_total', 'reason="no_shared_cipher"'))
      .toBe(1);
    // plain HTTP to the TLS port
    const before = await metric('gatehouse_tls_handshake_failures_total', 'reason="not_tls"');
    await new Promise<void>((resolve) => {
      const s = netConnect(gw!.gateway.port, '127.0.0.1', () => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      s.on('close', () => resolve());
      s.on('error', () => undefined);
      s.resume();
    });
    await expect
      .poll(() => metric('gatehouse_tls_handshake_failures_total', 'reason="not_tls"'))
      .toBe(before + 1);
    await gw.close();

    gw = await startGateway(`
listen: { host: 127.0.0.1, port: 0, tls: { cert: "${main.cert}", key: "${main.key}", minVersion: TLSv1.3 } }
${services()}`);
    expect(await handshake(gw.gateway.port, { maxVersion: 'TLSv1.2' })).toMatchObject({ ok: false });
    expect(await handshake(gw.gateway.port)).toMatchObject({ ok: true, protocol: 'TLSv1.3' });
    await expect
      .poll(() => metric('gatehouse_tls_handshake_failures_total', 'reason="protocol_version"'))
      .toBe(1);
  });
});

describe('the cleartext listener beside HTTPS', () => {
  const get = (port: number, path: string, host?: string) =>
    new Promise<{ status: number; location: string | undefined }>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, path, headers: host === undefined ? {} : { host } });
      req.on('response', (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, location: res.headers.location });
      });
      req.on('error', reject);
      req.end();
    });

  it('redirects to the same URL over HTTPS (308 by default; the port when it is not 443)', async () => {
    gw = await startGateway(`
listen:
  host: 127.0.0.1
  port: 0
  tls: { cert: "${main.cert}", key: "${main.key}" }
  plain: { port: 0 }
${services()}`);
    const plain = gw.gateway.plainPort as number;
    expect(await get(plain, '/public/a?b=1', 'api.test:8080')).toEqual({
      status: 308,
      location: `https://api.test:${gw.gateway.port}/public/a?b=1`,
    });
    expect(await get(plain, '/x', '[::1]:80')).toEqual({
      status: 308,
      location: `https://[::1]:${gw.gateway.port}/x`,
    });
    expect((await get(plain, '/x', 'evil.test/x@a')).status).toBe(400);
    expect(upstream.received.filter((r) => r.url.startsWith('/public/a'))).toHaveLength(0);
  });

  it('301 to port 443 leaves the port out', async () => {
    gw = await startGateway(`
listen:
  host: 127.0.0.1
  port: 0
  tls: { cert: "${main.cert}", key: "${main.key}" }
  plain: { port: 0, redirectStatus: 301, httpsPort: 443 }
${services()}`);
    expect(await get(gw.gateway.plainPort as number, '/y', 'api.test')).toEqual({
      status: 301,
      location: 'https://api.test/y',
    });
  });
});

describe('client certificates (mTLS) as the consumer', () => {
  it('a verified certificate names the consumer and its roles; without one: 401; unknown or wrong CA: refused', async () => {
    const billing = pki.client('billing');
    const stranger = pki.client('stranger');
    const other = new TestPki('Other CA');
    const forged = other.client('billing');
    try {
      gw = await startGateway(`
listen:
  host: 127.0.0.1
  port: 0
  tls:
    cert: "${main.cert}"
    key: "${main.key}"
    clientCertificates: { ca: "${pki.ca.cert}", mode: optional }
  http2: { cleartext: false }
auth:
  mtls:
    consumers:
      billing: { roles: [payer], tier: gold }
rbac:
  roles:
    payer: [payments:write]
    admin: [admin:all]
rateLimit:
  tiers:
    anonymous: { limits: [{ requests: 100, per: 1m }] }
    gold: { limits: [{ requests: 100, per: 1m }] }
services:
  echo: { targets: ["${upstream.url}"] }
routes:
  - { name: pay, match: { path: /pay/** }, service: echo, auth: [mtls], permissions: [payments:write], rateLimit: "off" }
  - { name: admin, match: { path: /admin/** }, service: echo, auth: [mtls], permissions: [admin:all], rateLimit: "off" }
`);
      const port = gw.gateway.port;
      const as = (c: Issued | null) =>
        new ProtocolClients(
          { tls: port, plain: 0 },
          { ca: pki.ca.certPem, ...(c === null ? {} : { cert: c.certPem, key: c.keyPem }) },
        );
      for (const way of ['https/1.1', 'h2'] as const) {
        const ok = as(billing);
        try {
          const a = await ok.send(way, '/pay/1', { headers: { 'x-consumer-id': 'someone-else' } });
          expect(a.status).toBe(200);
          const seen = JSON.parse(a.body.toString()) as { headers: Record<string, string> };
          expect(seen.headers['x-consumer-id']).toBe('billing');
          expect((await ok.send(way, '/admin/1')).status).toBe(403);
        } finally {
          ok.close();
        }
        const none = as(null);
        try {
          const a = await none.send(way, '/pay/1', { headers: { 'x-consumer-id': 'billing' } });
          expect(a.status).toBe(401);
          expect(a.headers['www-authenticate']).toMatch(/^Mutual/);
        } finally {
          none.close();
        }
        const unknown = as(stranger);
        try {
          expect((await unknown.send(way, '/pay/1')).status).toBe(401);
        } finally {
          unknown.close();
        }
        // signed by another CA: the TLS layer does not verify it (optional mode lets the
        // handshake through), so it names nobody, whatever its CN says
        const wrong = as(forged);
        try {
          expect((await wrong.send(way, '/pay/1')).status).toBe(401);
        } finally {
          wrong.close();
        }
      }
    } finally {
      other.remove();
    }
  });

  it('mode required: a handshake without a certificate the CA signed fails, and is counted', async () => {
    gw = await startGateway(`
listen:
  host: 127.0.0.1
  port: 0
  tls:
    cert: "${main.cert}"
    key: "${main.key}"
    clientCertificates: { ca: "${pki.ca.cert}" }
${services()}`);
    const client = pki.client('anyone');
    expect(await handshake(gw.gateway.port, { cert: client.certPem, key: client.keyPem })).toMatchObject({
      ok: true,
    });
    const without = new ProtocolClients({ tls: gw.gateway.port, plain: 0 }, { ca: pki.ca.certPem });
    try {
      await expect(without.send('https/1.1', '/public/x')).rejects.toThrow();
    } finally {
      without.close();
    }
    await expect
      .poll(() => metric('gatehouse_tls_handshake_failures_total', 'reason="no_client_certificate"'))
      .toBeGreaterThanOrEqual(1);
  });
});

describe('certificates re-read while connections stay open', () => {
  /** A gateway started from a file, so that POST /reload re-reads it. */
  async function fromFile(yaml: string): Promise<TestGateway> {
    const file = join(pki.dir, `gateway-${Date.now()}.yaml`);
    writeFileSync(file, yaml);
    const loaded = await loadConfigFile(file);
    if (!loaded.ok) throw new Error(loaded.problems.map(formatProblem).join('\n'));
    return new TestGateway(await Gateway.start(loaded.config, { configFile: file }));
  }

  it.each([
    ['POST /reload', false],
    ['a change of the files', true],
  ])(
    'on %s: open HTTP/2 and keep-alive HTTPS connections carry on; new ones get the new certificate',
    async (_how, watch) => {
      const certFile = join(pki.dir, `live-${String(watch)}.crt`);
      const keyFile = join(pki.dir, `live-${String(watch)}.key`);
      copyFileSync(main.cert, certFile);
      copyFileSync(main.key, keyFile);
      gw = await fromFile(`
listen:
  host: 127.0.0.1
  port: 0
  tls: { cert: "${certFile}", key: "${keyFile}", watch: ${String(watch)} }
admin: { host: 127.0.0.1, port: 0 }
${services()}`);
      const port = gw.gateway.port;
      const before = await handshake(port);
      expect(before.ok).toBe(true);
      const clients = new ProtocolClients({ tls: port, plain: 0 }, { ca: pki.ca.certPem });
      try {
        expect((await clients.send('h2', '/public/1')).status).toBe(200);
        expect((await clients.send('https/1.1', '/public/1')).status).toBe(200);
        const session = clients.session('h2');
        const renewed = pki.server(['localhost']);
        copyFileSync(renewed.key, keyFile);
        copyFileSync(renewed.cert, certFile);
        if (!watch) {
          const r = await fetch(`${gw.adminUrl}/reload`, { method: 'POST' });
          expect(r.status).toBe(200);
          const after = await handshake(port);
          expect(after).toMatchObject({ ok: true });
          expect(after.ok && after.fingerprint).not.toBe(before.ok && before.fingerprint);
        } else {
          await expect
            .poll(
              async () => {
                const h = await handshake(port);
                return h.ok ? h.fingerprint : null;
              },
              { timeout: 5000, interval: 100 },
            )
            .not.toBe(before.ok ? before.fingerprint : null);
        }
        // the connections made before carry on
        expect(clients.session('h2')).toBe(session);
        expect((await clients.send('h2', '/public/2')).status).toBe(200);
        expect((await clients.send('https/1.1', '/public/2')).status).toBe(200);
        expect(session.destroyed).toBe(false);
        await expect
          .poll(() => metric('gatehouse_tls_certificate_reloads_total', 'result="success"'))
          .toBeGreaterThanOrEqual(1);
      } finally {
        clients.close();
      }
    },
  );

  it('a key that does not match its certificate keeps the certificates in use', async () => {
    const certFile = join(pki.dir, 'bad.crt');
    const keyFile = join(pki.dir, 'bad.key');
    copyFileSync(main.cert, certFile);
    copyFileSync(main.key, keyFile);
    gw = await fromFile(`
listen:
  host: 127.0.0.1
  port: 0
  tls: { cert: "${certFile}", key: "${keyFile}", watch: false }
admin: { host: 127.0.0.1, port: 0 }
${services()}`);
    const before = await handshake(gw.gateway.port);
    copyFileSync(pki.server(['localhost']).cert, certFile); // the old key stays: no match
    await fetch(`${gw.adminUrl}/reload`, { method: 'POST' });
    expect(await metric('gatehouse_tls_certificate_reloads_total', 'result="failure"')).toBe(1);
    expect(await handshake(gw.gateway.port)).toEqual(before);
  });
});
