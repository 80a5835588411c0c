/**
 * HTTPS upstreams through the real gateway, against TLS servers with a CA made for the test:
 * verification on by default, a configured CA bundle, SNI, a client certificate (mTLS), TLS
 * connections and sessions reused by the pool, a wrong CA refused with 502 upstream_error (not
 * retried, the reason in the access log), and `verify: false` shown in the admin API.
 */
import { createServer, type Server, type ServerOptions } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeElasticsearch, type FakeElasticsearch } from '../helpers/fake-elasticsearch.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { request } from '../helpers/http-client.js';
import { metricValue, scrape, waitFor } from '../helpers/observe.js';
import { makeTestPki, type TestPki } from '../helpers/test-certs.js';

type TlsUpstream = {
  url: string;
  server: Server;
  /** full handshakes and resumed ones, as the server saw them */
  handshakes: { full: number; resumed: number };
  /** per request: the SNI name and the client certificate's CN (mTLS) */
  seen: Array<{ servername: string | false | null; clientCn: string | null }>;
  close(): Promise<void>;
};

async function startTlsUpstream(pki: TestPki, extra: ServerOptions = {}): Promise<TlsUpstream> {
  const handshakes = { full: 0, resumed: 0 };
  const seen: TlsUpstream['seen'] = [];
  const server = createServer({ cert: pki.serverCert, key: pki.serverKey, ...extra }, (req, res) => {
    const socket = req.socket as TLSSocket;
    const peer = socket.getPeerCertificate();
    const cn = peer?.subject?.CN;
    seen.push({ servername: socket.servername, clientCn: cn === undefined ? null : String(cn) });
    res.setHeader('content-type', 'text/plain');
    res.end(`hello over ${socket.getProtocol() ?? '?'}`);
  });
  server.on('secureConnection', (socket: TLSSocket) => {
    if (socket.isSessionReused()) handshakes.resumed++;
    else handshakes.full++;
  });
  server.on('tlsClientError', () => undefined); // refused clients are part of the tests
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `https://127.0.0.1:${port}`,
    server,
    handshakes,
    seen,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('HTTPS upstreams', () => {
  let pki: TestPki;
  let plain: TlsUpstream;
  let mtls: TlsUpstream;
  let impostor: TlsUpstream;
  let es: FakeElasticsearch;
  let gw: TestGateway;

  beforeAll(async () => {
    pki = makeTestPki();
    plain = await startTlsUpstream(pki);
    mtls = await startTlsUpstream(pki, { requestCert: true, rejectUnauthorized: true, ca: pki.ca });
    impostor = await startTlsUpstream(pki, { cert: pki.otherServerCert, key: pki.otherServerKey });
    es = await startFakeElasticsearch();
    const f = pki.files;
    gw = await startGateway(`
services:
  trusted: { targets: ["${plain.url}"], tls: { ca: "${f.ca}" } }
  named: { targets: ["${plain.url}"], tls: { ca: "${f.ca}", serverName: orders.internal } }
  system: { targets: ["${plain.url}"] }
  wrongca: { targets: ["${plain.url}"], tls: { ca: "${f.otherCa}" } }
  wrongname: { targets: ["${plain.url}"], tls: { ca: "${f.ca}", serverName: billing.internal } }
  insecure: { targets: ["${plain.url}"], tls: { verify: false } }
  mtls: { targets: ["${mtls.url}"], tls: { ca: "${f.ca}", cert: "${f.clientCert}", key: "${f.clientKey}" } }
  nocert: { targets: ["${mtls.url}"], tls: { ca: "${f.ca}" } }
  mixed:
    targets: ["${plain.url}", "${impostor.url}"]
    tls: { ca: "${f.ca}" }
    passiveHealth: { consecutiveErrors: 2, ejectFor: 1m }
routes:
  - { name: trusted, match: { path: /trusted/** }, service: trusted, stripPrefix: /trusted }
  - { name: named, match: { path: /named/** }, service: named, stripPrefix: /named }
  - { name: system, match: { path: /system/** }, service: system, stripPrefix: /system }
  - { name: wrongca, match: { path: /wrongca/** }, service: wrongca, stripPrefix: /wrongca }
  - { name: wrongname, match: { path: /wrongname/** }, service: wrongname, stripPrefix: /wrongname }
  - { name: insecure, match: { path: /insecure/** }, service: insecure, stripPrefix: /insecure }
  - { name: mtls, match: { path: /mtls/** }, service: mtls, stripPrefix: /mtls }
  - { name: nocert, match: { path: /nocert/** }, service: nocert, stripPrefix: /nocert }
  - { name: mixed, match: { path: /mixed/** }, service: mixed, stripPrefix: /mixed }
logging:
  access:
    elasticsearch: { url: "${es.url}", index: access-tls, batchSize: 10, flushInterval: 50ms }
`);
  });
  afterAll(async () => {
    await gw?.close();
    await Promise.all([plain?.close(), mtls?.close(), impostor?.close(), es?.close()]);
    pki?.remove();
  });

  const logged = async (requestId: string) => {
    await waitFor(() => es.docs.some((d) => d.doc.requestId === requestId), `access record ${requestId}`);
    return es.docs.find((d) => d.doc.requestId === requestId)?.doc as Record<string, unknown>;
  };

  it('proxies to a target whose certificate chains to the configured CA, over one TLS connection', async () => {
    const before = { ...plain.handshakes };
    const seenBefore = plain.seen.length;
    for (let i = 0; i < 100; i++) {
      const res = await request(`${gw.url}/trusted/x`);
      expect(res.status).toBe(200);
      expect(res.body.toString()).toMatch(/^hello over TLSv1\.[23]$/);
    }
    expect(plain.seen.length - seenBefore).toBe(100);
    // the pool keeps its connection: 100 requests, one handshake
    expect(plain.handshakes.full + plain.handshakes.resumed - before.full - before.resumed).toBe(1);
    // the SNI is the target's host; an IP address is not sent as SNI (RFC 6066)
    expect(plain.seen.at(-1)?.servername).toBe(false);
  });

  it('resumes the TLS session when the pool opens a new connection', async () => {
    await request(`${gw.url}/trusted/x`);
    plain.server.closeAllConnections(); // the pooled connection is gone
    const resumedBefore = plain.handshakes.resumed;
    await waitFor(async () => (await request(`${gw.url}/trusted/x`)).status === 200, 'a new connection');
    expect(plain.handshakes.resumed).toBeGreaterThan(resumedBefore);
  });

  it('sends serverName as SNI and verifies the certificate against it', async () => {
    const res = await request(`${gw.url}/named/x`);
    expect(res.status).toBe(200);
    expect(plain.seen.at(-1)?.servername).toBe('orders.internal');
    const wrong = await request(`${gw.url}/wrongname/x`, { headers: { 'x-request-id': 'tls-wrong-name' } });
    expect(wrong.status).toBe(502);
    expect(JSON.parse(wrong.body.toString()).code).toBe('upstream_error');
    expect(String((await logged('tls-wrong-name')).upstreamError)).toContain('ERR_TLS_CERT_ALTNAME_INVALID');
  });

  it('verifies against the system CAs by default: a private CA is not trusted', async () => {
    const res = await request(`${gw.url}/system/x`, { headers: { 'x-request-id': 'tls-system' } });
    expect(res.status).toBe(502);
    const record = await logged('tls-system');
    expect(record.error).toBe('upstream_error');
    expect(String(record.upstreamError)).toMatch(
      /^tls: .*\((UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\)$/,
    );
  });

  it('refuses a target whose certificate another CA signed: 502, one attempt, the reason logged', async () => {
    const seenBefore = plain.seen.length;
    const res = await request(`${gw.url}/wrongca/x`, { headers: { 'x-request-id': 'tls-wrong-ca' } });
    expect(res.status).toBe(502);
    const problem = JSON.parse(res.body.toString()) as { code: string; detail: string };
    expect(problem.code).toBe('upstream_error');
    expect(problem.detail).toContain('TLS with service "wrongca" failed');
    const record = await logged('tls-wrong-ca');
    // a GET is retryable, but a refused certificate is not retried: another attempt would fail alike
    expect(record.attempts).toBe(1);
    expect(String(record.upstreamError)).toMatch(/^tls: .+ \([A-Z_]+\)$/);
    expect(plain.seen.length).toBe(seenBefore); // nothing reached the target
    const text = await scrape(gw);
    expect(metricValue(text, 'gatehouse_upstream_errors_total', { service: 'wrongca', reason: 'tls' })).toBe(
      1,
    );
  });

  it('ejects a target whose certificate is refused (passive health); the others keep serving', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await request(`${gw.url}/mixed/x`)).status);
    // round robin: the impostor fails twice (502, not retried), then is ejected
    expect(statuses.filter((s) => s === 502)).toHaveLength(2);
    expect(statuses.slice(4)).toEqual(Array(8).fill(200));
    expect(impostor.seen).toHaveLength(0);
    const services = JSON.parse((await request(`${gw.adminUrl}/services`)).body.toString()) as {
      services: Array<{ name: string; targets: Array<{ target: string; ejected: boolean }> }>;
    };
    const mixed = services.services.find((s) => s.name === 'mixed');
    expect(mixed?.targets.find((t) => t.target === impostor.url)?.ejected).toBe(true);
    expect(mixed?.targets.find((t) => t.target === plain.url)?.ejected).toBe(false);
  });

  it('presents the client certificate to a target that requires one (mTLS)', async () => {
    const res = await request(`${gw.url}/mtls/x`);
    expect(res.status).toBe(200);
    expect(mtls.seen.at(-1)?.clientCn).toBe('gatehouse');
    const refused = await request(`${gw.url}/nocert/x`, { headers: { 'x-request-id': 'tls-no-cert' } });
    expect(refused.status).toBe(502);
    expect(String((await logged('tls-no-cert')).upstreamError)).toMatch(/^(tls|reset)/);
  });

  it('with verify: false, proxies to any certificate and says so in GET /services', async () => {
    const res = await request(`${gw.url}/insecure/x`);
    expect(res.status).toBe(200);
    const services = JSON.parse((await request(`${gw.adminUrl}/services`)).body.toString()) as {
      services: Array<{ name: string; tls: unknown; protocol: string }>;
    };
    const byName = new Map(services.services.map((s) => [s.name, s]));
    expect(byName.get('insecure')?.tls).toEqual({
      verify: false,
      ca: 'system',
      clientCertificate: null,
      serverName: null,
    });
    expect(byName.get('trusted')?.tls).toMatchObject({ verify: true, ca: pki.files.ca });
    expect(byName.get('trusted')?.protocol).toBe('http1');
  });
});
