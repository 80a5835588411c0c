/** OTLP/HTTP span export against a local receiver: ids, names, attributes, flush, failures. */
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/observability/logger.js';
import { Tracing, type SpanOutcome, type TracingOptions } from '../../src/observability/tracing/index.js';
import { startOtlpReceiver, type OtlpReceiver } from '../helpers/otlp-receiver.js';

const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';
const ok: SpanOutcome = {
  route: '/users/**',
  method: 'GET',
  status: 200,
  service: 'users',
  target: 'http://127.0.0.1:9001',
  error: null,
};

type Log = { level: number; msg: string; [k: string]: unknown };

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function receiver(): Promise<OtlpReceiver> {
  const r = await startOtlpReceiver();
  cleanup.push(() => r.close());
  return r;
}

function tracing(otlpUrl: string, options: TracingOptions, logger = silentLogger()): Tracing {
  const t = new Tracing({ otlpUrl, sampleRate: 1, serviceName: 'gatehouse-test' }, logger, options);
  cleanup.push(() => t.shutdown(2000));
  return t;
}

describe('OTLP export', () => {
  it('exports sampled spans with the ids forwarded upstream, the caller as parent, and the attributes', async () => {
    const rx = await receiver();
    const t = tracing(rx.url, { scheduledDelayMs: 20 });

    const root = t.begin(undefined, undefined);
    t.end(root, { ...ok, serverAddress: 'api.example' });
    const child = t.begin(`00-${CALLER_TRACE}-${CALLER_SPAN}-01`, 'rojo=00f067aa0ba902b7');
    t.end(child, { ...ok, method: 'POST', route: null, status: 404, service: null, target: null });
    const failed = t.begin(`00-${CALLER_TRACE}-${CALLER_SPAN}-01`, undefined);
    t.end(failed, { ...ok, status: 504, error: 'upstream_timeout' });
    const unsampled = t.begin(`00-${CALLER_TRACE}-${CALLER_SPAN}-00`, undefined);
    t.end(unsampled, ok);

    const spans = await rx.waitForSpans(3);
    const byId = new Map(spans.map((s) => [s.spanId, s]));

    // what the upstream was told is exactly what the collector got
    const r = byId.get(root.spanId);
    expect(root.traceparent).toBe(`00-${root.traceId}-${root.spanId}-01`);
    expect(r).toMatchObject({ traceId: root.traceId, parentSpanId: '', name: 'GET /users/**', kind: 2 });
    expect(r?.statusCode).toBe(0);
    expect(r?.attributes).toEqual({
      'http.request.method': 'GET',
      'http.route': '/users/**',
      'http.response.status_code': 200,
      'url.scheme': 'http',
      'server.address': 'api.example',
      'gatehouse.service': 'users',
      'gatehouse.target': 'http://127.0.0.1:9001',
    });
    expect(r?.resource['service.name']).toBe('gatehouse-test');
    expect(BigInt(r?.endTimeUnixNano ?? 0)).toBeGreaterThanOrEqual(BigInt(r?.startTimeUnixNano ?? 1));

    const c = byId.get(child.spanId);
    expect(child.traceparent).toBe(`00-${CALLER_TRACE}-${child.spanId}-01`);
    expect(c).toMatchObject({
      traceId: CALLER_TRACE,
      parentSpanId: CALLER_SPAN,
      name: 'POST unmatched',
      kind: 2,
      traceState: 'rojo=00f067aa0ba902b7',
    });
    expect(c?.attributes).toEqual({
      'http.request.method': 'POST',
      'http.response.status_code': 404,
      'url.scheme': 'http',
    });

    const f = byId.get(failed.spanId);
    expect(f).toMatchObject({ traceId: CALLER_TRACE, parentSpanId: CALLER_SPAN, statusCode: 2 });
    expect(f?.attributes['error.type']).toBe('upstream_timeout');
    expect(f?.attributes['http.response.status_code']).toBe(504);

    await t.shutdown(2000);
    expect(rx.spans.map((s) => s.spanId).sort()).toEqual([root.spanId, child.spanId, failed.spanId].sort());
    expect(t.stats()).toEqual({ queued: 0, exported: 3, dropped: 0, failed: 0 });
  });

  it('flushes pending spans on shutdown', async () => {
    const rx = await receiver();
    // the batch timer would not fire within the test: only shutdown can send them
    const t = tracing(rx.url, { scheduledDelayMs: 600_000 });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const tc = t.begin(undefined, undefined);
      t.end(tc, ok);
      ids.push(tc.spanId);
    }
    expect(t.stats().queued).toBe(5);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(rx.requests).toBe(0);

    await t.shutdown(5000);
    expect(rx.spans.map((s) => s.spanId).sort()).toEqual(ids.sort());
    expect(t.stats()).toMatchObject({ queued: 0, exported: 5 });

    // recorded after shutdown: counted as dropped, never sent
    t.end(t.begin(undefined, undefined), ok);
    expect(t.stats().dropped).toBe(1);
  });

  it('sends full batches without waiting for the timer', async () => {
    const rx = await receiver();
    const t = tracing(rx.url, { scheduledDelayMs: 600_000, maxExportBatchSize: 4 });
    for (let i = 0; i < 8; i++) t.end(t.begin(undefined, undefined), ok);
    await rx.waitForSpans(8);
    expect(rx.requests).toBe(2);
  });
});

describe('OTLP export: collector failures', () => {
  it('never throws from or blocks end() while the collector is down, drops past the queue, and still shuts down', async () => {
    const rx = await startOtlpReceiver();
    const url = rx.url;
    await rx.close(); // the port now refuses connections
    const logs: Log[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line) as Log) });
    const t = tracing(url, { scheduledDelayMs: 5, maxQueueSize: 100, exportTimeoutMs: 300 }, logger);

    const started = performance.now();
    for (let i = 0; i < 5000; i++) {
      const tc = t.begin(undefined, undefined);
      expect(t.end(tc, ok)).toBeUndefined();
    }
    // generous: 5000 synchronous end() calls, nothing waited on the network
    expect(performance.now() - started).toBeLessThan(5000);
    const stats = t.stats();
    expect(stats.queued).toBeLessThanOrEqual(100);
    expect(stats.dropped).toBeGreaterThan(0);
    expect(logs.some((l) => l.msg === 'tracing: span queue full, dropping spans')).toBe(true);

    const shutdownStarted = performance.now();
    await t.shutdown(1000);
    expect(performance.now() - shutdownStarted).toBeLessThan(3000);
    expect(t.stats()).toMatchObject({ exported: 0, queued: 0 });
    expect(t.stats().failed).toBeGreaterThan(0);
    expect(logs.some((l) => l.msg === 'tracing: span export failed')).toBe(true);
  });

  it('counts spans the collector refuses and logs once', async () => {
    const rx = await receiver();
    rx.respondWith(400);
    const logs: Log[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line) as Log) });
    const t = tracing(rx.url, { scheduledDelayMs: 600_000, maxExportBatchSize: 2 }, logger);
    for (let i = 0; i < 6; i++) t.end(t.begin(undefined, undefined), ok);
    await t.shutdown(5000);
    expect(rx.requests).toBe(3);
    expect(rx.spans).toHaveLength(0);
    expect(t.stats()).toMatchObject({ exported: 0, failed: 6, queued: 0 });
    expect(logs.filter((l) => l.msg === 'tracing: span export failed')).toHaveLength(1);
  });
});
