/**
 * Observability through the real gateway: the documented metrics (checked by `promtool check
 * metrics`), trace context continued or started and forwarded upstream, spans exported over
 * OTLP, and one access-log record per request shipped to (a fake) Elasticsearch with the
 * accounting invariant enqueued = shipped + dropped + buffered.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFakeElasticsearch, type FakeElasticsearch } from '../helpers/fake-elasticsearch.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { request } from '../helpers/http-client.js';
import { startOtlpReceiver, type OtlpReceiver } from '../helpers/otlp-receiver.js';
import { scrape, waitFor } from '../helpers/observe.js';
import { promtool } from '../helpers/promtool.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

/** The value of one sample line `name{labels} value`, or undefined. */
function sample(text: string, name: string, labels: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

const TRACEPARENT = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

describe('observability', () => {
  let upstream: Upstream;
  let es: FakeElasticsearch;
  let otlp: OtlpReceiver;
  let gw: TestGateway;

  beforeAll(async () => {
    upstream = await startUpstream();
    es = await startFakeElasticsearch();
    otlp = await startOtlpReceiver();
    gw = await startGateway(`
services:
  api: { targets: ["${upstream.url}"] }
routes:
  - { name: api, match: { path: /api/** }, service: api, stripPrefix: /api }
logging:
  access:
    elasticsearch: { url: "${es.url}", index: access-test, batchSize: 50, flushInterval: 50ms }
tracing: { otlpUrl: "${otlp.url}", sampleRate: 0 }
`);
  });
  afterAll(async () => {
    await gw?.close();
    await Promise.all([upstream?.close(), es?.close(), otlp?.close()]);
  });

  it('continues a caller trace: same trace id, the gateway span as parent, tracestate forwarded', async () => {
    const res = await request(`${gw.url}/api/t1`, {
      headers: { traceparent: TRACEPARENT, tracestate: 'vendor=abc' },
    });
    expect(res.status).toBe(200);
    const seen = JSON.parse(res.body.toString()) as { headers: Record<string, string> };
    const [version, traceId, parent, flags] = seen.headers.traceparent?.split('-') ?? [];
    expect(version).toBe('00');
    expect(traceId).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
    expect(parent).toMatch(/^[0-9a-f]{16}$/);
    expect(parent).not.toBe('00f067aa0ba902b7');
    expect(flags).toBe('01');
    expect(seen.headers.tracestate).toBe('vendor=abc');
    // sampled by the caller: the gateway's span is exported with the id it forwarded
    const [span] = await otlp.waitForSpans(1);
    expect(span?.traceId).toBe(traceId);
    expect(span?.spanId).toBe(parent);
    expect(span?.parentSpanId).toBe('00f067aa0ba902b7');
    expect(span?.attributes['http.route']).toBe('/api/**');
    expect(span?.attributes['http.response.status_code']).toBe(200);
  });

  it('starts a trace when the caller sent none or an invalid one (and drops its tracestate)', async () => {
    for (const headers of [{}, { traceparent: 'garbage', tracestate: 'a=b' }]) {
      const res = await request(`${gw.url}/api/t2`, { headers });
      const seen = JSON.parse(res.body.toString()) as { headers: Record<string, string> };
      expect(seen.headers.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
      expect(seen.headers.traceparent).not.toContain('4bf92f3577b34da6a3ce929d0e0e4736');
      expect(seen.headers.tracestate).toBeUndefined();
    }
  });

  it('exposes the documented metrics, valid for promtool, with no path or address in a label', async () => {
    await request(`${gw.url}/api/secret-path-123?token=abc`);
    await request(`${gw.url}/nowhere-456`);
    await request(`${gw.url}/api/x`, { method: 'PROPFIND' });
    const text = await scrape(gw);
    for (const name of [
      'http_server_request_duration_seconds',
      'gatehouse_requests_total',
      'gatehouse_upstream_request_duration_seconds',
      'gatehouse_upstream_errors_total',
      'gatehouse_ratelimit_decisions_total',
      'gatehouse_circuit_breaker_state',
      'gatehouse_target_healthy',
      'gatehouse_auth_failures_total',
      'gatehouse_access_log_dropped_total',
      'gatehouse_access_log_shipped_total',
      'gatehouse_store_errors_total',
      'gatehouse_config_reloads_total',
      'gatehouse_build_info',
      'gatehouse_tracing_spans_total',
      'process_cpu_seconds_total',
      'nodejs_eventloop_lag_p99_seconds',
    ]) {
      expect(text, name).toContain(`# TYPE ${name} `);
    }
    expect(
      sample(
        text,
        'http_server_request_duration_seconds_count',
        'http_route="api",http_request_method="GET",http_response_status_code="200"',
      ),
    ).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'gatehouse_requests_total', 'route="",service="",method="GET",status="404"')).toBe(1);
    expect(
      sample(text, 'gatehouse_requests_total', 'route="api",service="api",method="_OTHER",status="200"'),
    ).toBe(1);
    expect(sample(text, 'gatehouse_circuit_breaker_state', 'service="api"')).toBe(0);
    expect(
      sample(text, 'gatehouse_target_healthy', `service="api",target="127.0.0.1:${upstream.port}"`),
    ).toBe(1);
    expect(text).not.toContain('secret-path-123');
    expect(text).not.toContain('nowhere-456');
    expect(text).not.toMatch(/[{,](ip|client_ip|path|user|key)="/);
    const check = await promtool(['check', 'metrics'], undefined, text);
    expect(check.output).toBe('');
    expect(check.code).toBe(0);
  });

  it('ships one access-log record per request, without the query, and accounts for every record', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const res = await request(`${gw.url}/api/log/${i}?apikey=SECRET`, {
        headers: { 'x-request-id': `log-${i}` },
      });
      ids.push(String(res.headers['x-request-id']));
    }
    const logged = () => es.docs.map((d) => d.doc).filter((d) => String(d.requestId).startsWith('log-'));
    await waitFor(() => logged().length >= 20, 'the records in Elasticsearch');
    const docs = logged();
    expect(docs.map((d) => d.requestId)).toEqual(ids);
    const first = docs[0] as Record<string, unknown>;
    expect(first).toMatchObject({
      route: 'api',
      method: 'GET',
      path: '/api/log/0',
      status: 200,
      clientIp: '127.0.0.1',
      upstream: `127.0.0.1:${upstream.port}`,
      attempts: 1,
      rateLimit: null,
      error: null,
    });
    expect(first.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(first.durationMs).toBeGreaterThan(0);
    expect(first.bytesOut).toBeGreaterThan(0);
    expect(JSON.stringify(docs)).not.toContain('SECRET');
    const stats = gw.gateway.accessLog.stats().elasticsearch;
    expect(stats).toBeDefined();
    if (stats) expect(stats.enqueued).toBe(stats.shipped + stats.dropped + stats.buffered);
  });

  it('records WebSocket upgrades: 101 and refusals', async () => {
    const upgrade = (path: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(gw.gateway.port, '127.0.0.1');
        let head = '';
        socket.on('error', reject);
        socket.on('data', (d: Buffer) => {
          head += d.toString('latin1');
          if (head.includes('\r\n\r\n')) {
            socket.destroy();
            resolve(head.slice(0, head.indexOf('\r\n')));
          }
        });
        socket.write(
          `GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
            'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Request-Id: ws-1\r\n\r\n',
        );
      });
    expect(await upgrade('/api/ws')).toMatch(/^HTTP\/1\.1 101/);
    expect(await upgrade('/nope/ws')).toMatch(/^HTTP\/1\.1 404/);
    const text = await scrape(gw);
    expect(
      sample(text, 'gatehouse_requests_total', 'route="api",service="api",method="GET",status="101"'),
    ).toBe(1);
    await waitFor(
      () => es.docs.some((d) => d.doc.requestId === 'ws-1' && d.doc.status === 101),
      'the records in Elasticsearch',
    );
    const doc = es.docs.find((d) => d.doc.requestId === 'ws-1' && d.doc.status === 101)?.doc;
    expect(doc).toMatchObject({
      route: 'api',
      path: '/api/ws',
      attempts: 1,
      upstream: `127.0.0.1:${upstream.port}`,
    });
    await waitFor(() => es.docs.some((d) => d.doc.path === '/nope/ws'), 'the records in Elasticsearch');
    expect(es.docs.find((d) => d.doc.path === '/nope/ws')?.doc).toMatchObject({
      status: 404,
      error: 'no_route',
    });
  });

  it('records gateway errors with their code, and never makes a request wait for a down Elasticsearch', async () => {
    await es.down();
    const started = performance.now();
    for (let i = 0; i < 10; i++) expect((await request(`${gw.url}/missing/${i}`)).status).toBe(404);
    expect(performance.now() - started).toBeLessThan(2000);
    const stats = gw.gateway.accessLog.stats().elasticsearch;
    if (stats) {
      expect(stats.buffered).toBeGreaterThanOrEqual(10);
      expect(stats.enqueued).toBe(stats.shipped + stats.dropped + stats.buffered);
    }
    await es.up();
    await waitFor(() => es.docs.some((d) => d.doc.path === '/missing/9'), 'the records in Elasticsearch');
    const missing = es.docs.find((d) => d.doc.path === '/missing/0')?.doc;
    expect(missing).toMatchObject({
      route: null,
      status: 404,
      error: 'no_route',
      attempts: 0,
      upstream: null,
    });
    const text = await scrape(gw);
    const shipped = sample(text, 'gatehouse_access_log_shipped_total', 'sink="elasticsearch"');
    expect(shipped).toBe(es.docs.length);
  });
});

describe('access log on shutdown', () => {
  it('ships the records still buffered when the gateway drains', async () => {
    const upstream = await startUpstream();
    const es = await startFakeElasticsearch();
    const gw = await startGateway(`
services:
  api: { targets: ["${upstream.url}"] }
routes:
  - { name: api, match: { path: /** }, service: api }
logging:
  access:
    elasticsearch: { url: "${es.url}", batchSize: 1000, flushInterval: 1m }
`);
    try {
      for (let i = 0; i < 5; i++) expect((await request(`${gw.url}/s/${i}`)).status).toBe(200);
      expect(es.docs.length).toBe(0); // a minute's flush interval: nothing sent yet
      await gw.close();
      expect(es.docs.map((d) => d.doc.path)).toEqual(['/s/0', '/s/1', '/s/2', '/s/3', '/s/4']);
      const stats = gw.gateway.accessLog.stats().elasticsearch;
      expect(stats).toMatchObject({ enqueued: 5, shipped: 5, dropped: 0, buffered: 0 });
    } finally {
      await gw.close();
      await Promise.all([upstream.close(), es.close()]);
    }
  });
});
