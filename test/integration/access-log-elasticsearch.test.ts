/**
 * The access log against a fake `_bulk` server (test/helpers/fake-elasticsearch.ts; no real
 * Elasticsearch can be installed here): bursts, outages, stalls, per-item failures, a full
 * buffer, shutdown. Everywhere: enqueued = shipped + dropped + buffered, sampled while it runs,
 * and what the log counts as shipped is what the server stored.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ElasticsearchSinkConfig } from '../../src/config/schema.js';
import { AccessLog, type AccessRecord, type SinkStats } from '../../src/observability/access-log/index.js';
import {
  MAPPER_PARSING,
  TOO_MANY,
  everyNth,
  startFakeElasticsearch,
  type FakeElasticsearch,
} from '../helpers/fake-elasticsearch.js';

const record = (i: number, overrides: Partial<AccessRecord> = {}): AccessRecord => ({
  time: new Date(Date.UTC(2025, 0, 1) + i).toISOString(),
  requestId: `req-${i}`,
  traceId: i % 3 === 0 ? `trace-${i}` : null,
  route: 'orders',
  method: i % 2 === 0 ? 'GET' : 'POST',
  path: `/orders/${i}`,
  status: 200,
  durationMs: 3.25,
  clientIp: '198.51.100.4',
  upstream: 'http://127.0.0.1:9',
  upstreamDurationMs: 2.5,
  upstreamError: null,
  attempts: 1,
  consumerId: 'consumer-1',
  tier: 'gold',
  bytesIn: i,
  bytesOut: 2 * i,
  rateLimit: 'allowed',
  error: null,
  ...overrides,
});

const idOf = (doc: Record<string, unknown>): number => Number(String(doc.requestId).slice(4));

let es: FakeElasticsearch;
let logs: Array<{ level: number; msg: string } & Record<string, unknown>>;
let log: AccessLog | null;
const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line)) });

beforeEach(async () => {
  es = await startFakeElasticsearch();
  logs = [];
  log = null;
});

afterEach(async () => {
  await log?.close(0);
  await es.close();
});

function open(
  overrides: Partial<ElasticsearchSinkConfig> = {},
  extra: { registry?: Registry } = {},
): AccessLog {
  log = new AccessLog(
    {
      stdout: false,
      elasticsearch: {
        url: es.url,
        index: 'gatehouse-access',
        batchSize: 500,
        flushInterval: 20,
        maxBuffer: 10_000,
        timeout: 300,
        maxBackoff: 200,
        ...overrides,
      },
    },
    { logger, ...extra },
  );
  return log;
}

const stats = (l: AccessLog): SinkStats => {
  const s = l.stats().elasticsearch;
  if (s === undefined) throw new Error('no elasticsearch sink');
  return s;
};

function expectInvariant(l: AccessLog): void {
  for (const s of Object.values(l.stats()) as SinkStats[]) {
    expect(s.enqueued).toBe(s.shipped + s.dropped + s.buffered);
  }
}

/** Polls `check`, asserting the invariant at every sample. */
async function until(l: AccessLog, check: () => boolean, timeoutMs = 15_000): Promise<number> {
  const end = Date.now() + timeoutMs;
  let samples = 0;
  while (true) {
    expectInvariant(l);
    samples++;
    if (check()) return samples;
    if (Date.now() > end) throw new Error(`not reached: ${JSON.stringify(l.stats())}`);
    await new Promise((resolve) => setTimeout(resolve, 3));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('access log → Elasticsearch _bulk', () => {
  it('delivers a burst of 10 000 records, in batches of at most batchSize, each doc whole', async () => {
    const l = open();
    const pushed = Array.from({ length: 10_000 }, (_, i) => record(i));
    for (const r of pushed) l.push(r);
    expect(stats(l)).toMatchObject({ enqueued: 10_000, buffered: 10_000, dropped: 0 });
    await until(l, () => stats(l).shipped === 10_000);
    expect(stats(l)).toEqual({
      enqueued: 10_000,
      shipped: 10_000,
      dropped: 0,
      buffered: 0,
      droppedBy: { buffer_full: 0, rejected: 0, retries_exhausted: 0, shutdown: 0, closed: 0 },
    });
    expect(es.docs).toHaveLength(10_000);
    expect(es.requests.length).toBeGreaterThanOrEqual(20);
    for (const req of es.requests) {
      expect(req.docs.length).toBeLessThanOrEqual(500);
      expect(req.path.startsWith('/_bulk?')).toBe(true);
      expect(req.headers['content-type']).toBe('application/x-ndjson');
    }
    // in order, once each, every field as pushed, plus @timestamp
    expect(es.docs.map((d) => idOf(d.doc))).toEqual(pushed.map((_, i) => i));
    for (const { index, doc } of es.docs) {
      expect(index).toBe('gatehouse-access');
      const original = pushed[idOf(doc)];
      expect(doc).toEqual({ '@timestamp': original?.time, ...original });
    }
  });

  it('sends the API key', async () => {
    const l = open({ apiKey: 'c2VjcmV0' });
    l.push(record(1));
    await until(l, () => stats(l).shipped === 1);
    expect(es.requests[0]?.headers.authorization).toBe('ApiKey c2VjcmV0');
  });

  it('keeps everything while Elasticsearch is down, backs off, and delivers all once it is up', async () => {
    const registry = new Registry();
    const l = open({ batchSize: 100 }, { registry });
    await es.down();
    for (let wave = 0; wave < 10; wave++) {
      for (let i = 0; i < 100; i++) l.push(record(wave * 100 + i));
      await sleep(15);
      expectInvariant(l);
    }
    await sleep(300);
    expect(stats(l)).toMatchObject({ enqueued: 1000, shipped: 0, dropped: 0, buffered: 1000 });
    expect(logs.filter((e) => e.msg.startsWith('access log sink failing'))).toHaveLength(1);
    await es.up();
    const samples = await until(l, () => stats(l).shipped === 1000);
    expect(samples).toBeGreaterThan(1);
    expect(es.docs.map((d) => idOf(d.doc)).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 1000 }, (_, i) => i),
    );
    expect(logs.some((e) => e.msg === 'access log sink recovered')).toBe(true);

    const metrics = new Map(
      ((await registry.getMetricsAsJSON()) as Array<{ name: string; values: Array<{ value: number }> }>).map(
        (m) => [m.name, m.values.reduce((a, v) => a + v.value, 0)],
      ),
    );
    expect(metrics.get('gatehouse_access_log_enqueued_total')).toBe(1000);
    expect(metrics.get('gatehouse_access_log_shipped_total')).toBe(1000);
    expect(metrics.get('gatehouse_access_log_dropped_total')).toBe(0);
    expect(metrics.get('gatehouse_access_log_buffered')).toBe(0);
  });

  it('retries a batch whose request stalls beyond the timeout', async () => {
    const l = open({ timeout: 200 });
    es.script({ kind: 'stall' });
    for (let i = 0; i < 50; i++) l.push(record(i));
    await until(l, () => es.requests.length === 1);
    expect(stats(l)).toMatchObject({ shipped: 0, buffered: 50 }); // in flight, outcome unknown
    await until(l, () => stats(l).shipped === 50);
    expect(es.requests.map((r) => r.answer)).toEqual(['stall', 'ok']);
    expect(es.requests[1]?.docs).toEqual(es.requests[0]?.docs);
    expect(es.docs).toHaveLength(50);
  });

  it('retries a request answered 429 or 503 as a whole', async () => {
    const l = open();
    es.script({ kind: 'status', status: 429 }, { kind: 'status', status: 503 });
    for (let i = 0; i < 30; i++) l.push(record(i));
    await until(l, () => stats(l).shipped === 30);
    expect(es.requests.map((r) => r.answer)).toEqual(['status', 'status', 'ok']);
    expect(es.docs).toHaveLength(30);
  });

  it('retries 429 items until they arrive, drops 400 items as rejected', async () => {
    const l = open({ batchSize: 60 });
    const poison = (i: number): boolean => i % 10 === 7; // e.g. a field Elasticsearch cannot map
    es.otherwise({ kind: 'items', fail: (doc) => (poison(idOf(doc)) ? MAPPER_PARSING : null) });
    es.script({
      kind: 'items',
      fail: (doc, position) => (poison(idOf(doc)) ? MAPPER_PARSING : everyNth(3, TOO_MANY)(doc, position)),
    });
    for (let i = 0; i < 120; i++) l.push(record(i));
    await until(l, () => stats(l).buffered === 0);
    const rejected = Array.from({ length: 120 }, (_, i) => i).filter(poison);
    expect(stats(l)).toMatchObject({
      enqueued: 120,
      shipped: 120 - rejected.length,
      dropped: rejected.length,
    });
    expect(stats(l).droppedBy.rejected).toBe(rejected.length);
    const stored = es.docs.map((d) => idOf(d.doc)).sort((a, b) => a - b);
    expect(stored).toEqual(Array.from({ length: 120 }, (_, i) => i).filter((i) => !poison(i)));
    expect(stats(l).shipped).toBe(es.docs.length);
    const warnings = logs.filter((e) => e.msg.startsWith('Elasticsearch rejected'));
    expect(warnings).toHaveLength(1); // rate-limited
    expect(warnings[0]?.reason).toContain('mapper_parsing_exception');
  });

  it('gives up on a record Elasticsearch keeps answering 429 for (retries_exhausted)', async () => {
    const l = open({ flushInterval: 5, maxBackoff: 20 });
    es.otherwise({ kind: 'items', fail: (doc) => (idOf(doc) === 1 ? TOO_MANY : null) });
    for (let i = 0; i < 3; i++) l.push(record(i));
    await until(l, () => stats(l).buffered === 0);
    expect(stats(l)).toMatchObject({ shipped: 2, droppedBy: { retries_exhausted: 1 } });
    // sent once, then retried 5 times
    expect(es.requests.filter((r) => r.docs.some((d) => idOf(d) === 1))).toHaveLength(6);
  });

  it('drops the oldest when maxBuffer is full while Elasticsearch is down, and keeps the newest', async () => {
    const l = open({ batchSize: 50, maxBuffer: 100 });
    await es.down();
    for (let i = 0; i < 100; i++) l.push(record(i));
    await sleep(60); // a few failed attempts
    for (let i = 100; i < 250; i++) l.push(record(i));
    await sleep(60);
    expectInvariant(l);
    expect(stats(l)).toMatchObject({
      enqueued: 250,
      shipped: 0,
      buffered: 100,
      droppedBy: { buffer_full: 150 },
    });
    await es.up();
    await until(l, () => stats(l).shipped === 100);
    expect(es.docs.map((d) => idOf(d.doc)).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 100 }, (_, i) => i + 150),
    );
  });

  it('flushes what is buffered on close, then counts later records as closed', async () => {
    const l = open({ flushInterval: 60_000 });
    for (let i = 0; i < 1200; i++) l.push(record(i));
    await until(l, () => stats(l).shipped === 1000); // two full batches go at once
    await sleep(50);
    expect(stats(l)).toMatchObject({ shipped: 1000, buffered: 200 }); // the rest waits for the interval
    await l.close(5000);
    expect(stats(l)).toMatchObject({ enqueued: 1200, shipped: 1200, dropped: 0, buffered: 0 });
    expect(es.docs).toHaveLength(1200);
    l.push(record(9999));
    expect(stats(l)).toMatchObject({ enqueued: 1201, buffered: 0, droppedBy: { closed: 1 } });
  });

  it('on close with Elasticsearch down, tries until the timeout and drops the rest as shutdown', async () => {
    // with a request timeout this long, only close's deadline can end the stalled request
    const l = open({ flushInterval: 60_000, timeout: 60_000 });
    es.otherwise({ kind: 'stall' });
    for (let i = 0; i < 10; i++) l.push(record(i));
    await l.close(150);
    expect(stats(l)).toMatchObject({ enqueued: 10, shipped: 0, buffered: 0, droppedBy: { shutdown: 10 } });
    expect(es.requests.length).toBeGreaterThanOrEqual(1);
  });

  it('never lets a down Elasticsearch hold back stdout', async () => {
    const lines: string[] = [];
    const stdout = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(...chunk.toString().split('\n').filter(Boolean));
        cb();
      },
    });
    await es.down();
    log = new AccessLog(
      {
        stdout: true,
        elasticsearch: {
          url: es.url,
          index: 'gatehouse-access',
          batchSize: 100,
          flushInterval: 20,
          maxBuffer: 500,
          timeout: 300,
          maxBackoff: 200,
        },
      },
      { logger, stdoutDestination: stdout, stdoutShipping: { flushInterval: 5 } },
    );
    const l = log;
    for (let i = 0; i < 2000; i++) l.push(record(i));
    await until(l, () => l.stats().stdout?.shipped === 2000);
    expect(lines).toHaveLength(2000);
    expect(stats(l)).toMatchObject({ shipped: 0, buffered: 500, droppedBy: { buffer_full: 1500 } });
  });
});
