/** The stdout sink (JSON lines to an injected Writable) and the AccessLog front with its metrics. */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { beforeEach, describe, expect, it } from 'vitest';
import { AccessLog, type AccessRecord, type SinkStats } from '../../src/observability/access-log/index.js';
import { accessLine } from '../../src/observability/access-log/stdout-sink.js';
import { ManualScheduler } from '../helpers/manual-scheduler.js';

const record = (i: number): AccessRecord => ({
  time: new Date(Date.UTC(2025, 0, 1, 0, 0, 0, i)).toISOString(),
  requestId: `req-${i}`,
  traceId: null,
  route: i % 2 === 0 ? 'orders' : null,
  method: 'GET',
  path: `/orders/${i}`,
  status: i % 2 === 0 ? 200 : 404,
  durationMs: 1.5,
  clientIp: '127.0.0.1',
  upstream: null,
  upstreamDurationMs: null,
  upstreamError: null,
  attempts: 0,
  consumerId: null,
  tier: null,
  bytesIn: 0,
  bytesOut: 10,
  rateLimit: null,
  error: i % 2 === 0 ? null : 'no_route',
});

/** A Writable that keeps what it is given; `hold` keeps each write's callback until released. */
function destination(hold = false) {
  const chunks: string[] = [];
  const held: Array<() => void> = [];
  const stream = new Writable({
    highWaterMark: 1,
    decodeStrings: false,
    write(chunk: string, _enc, cb) {
      chunks.push(chunk);
      if (hold) held.push(() => cb());
      else cb();
    },
  });
  return {
    stream,
    chunks,
    lines: () => chunks.join('').split('\n').filter(Boolean),
    release: () => held.splice(0).forEach((cb) => cb()),
  };
}

function capture() {
  const logs: Array<{ level: number; msg: string } & Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line)) });
  return { logs, logger };
}

/** The shipper's timers, moved by the tests (`scheduler.advance`) instead of waited for. */
let scheduler = new ManualScheduler();
beforeEach(() => {
  scheduler = new ManualScheduler();
});

/** Advances the shipper's clock 1 ms at a time (up to 4 s of it) until `check` holds. */
async function until(check: () => boolean, log?: AccessLog): Promise<void> {
  for (let i = 0; i < 4000; i++) {
    if (log !== undefined) expectInvariant(log);
    if (check()) return;
    await scheduler.advance(1);
  }
  throw new Error('condition not reached');
}

/** Closes `log`, advancing its clock while the close waits (up to its timeout). */
async function close(log: AccessLog, timeoutMs: number): Promise<void> {
  let done = false;
  const closing = log.close(timeoutMs).then(() => (done = true));
  for (let t = 0; !done && t <= timeoutMs; t++) await scheduler.advance(1);
  await closing;
}

function expectInvariant(log: AccessLog): void {
  for (const s of Object.values(log.stats()) as SinkStats[])
    expect(s.enqueued).toBe(s.shipped + s.dropped + s.buffered);
}

const stdoutOnly = { stdout: true };

describe('stdout lines', () => {
  it('are pino JSON lines: level 30, msg "access", then the record', () => {
    const line = accessLine(record(0));
    expect(line.endsWith('\n')).toBe(true);
    expect(line.indexOf('\n')).toBe(line.length - 1);
    expect(JSON.parse(line)).toEqual({ level: 30, msg: 'access', ...record(0) });
  });
});

describe('AccessLog with stdout', () => {
  it('writes every record as one line, in batches', async () => {
    const dest = destination();
    const { logger } = capture();
    const log = new AccessLog(stdoutOnly, {
      logger,
      stdoutDestination: dest.stream,
      stdoutShipping: { batchSize: 10, flushInterval: 5 },
      scheduler,
    });
    for (let i = 0; i < 25; i++) log.push(record(i));
    expectInvariant(log);
    await until(() => log.stats().stdout?.shipped === 25, log);
    expect(dest.chunks.length).toBeGreaterThanOrEqual(3);
    expect(dest.lines().map((l) => JSON.parse(l) as unknown)).toEqual(
      Array.from({ length: 25 }, (_, i) => ({ level: 30, msg: 'access', ...record(i) })),
    );
    await close(log, 1000);
    expect(log.stats().stdout).toMatchObject({ enqueued: 25, shipped: 25, dropped: 0, buffered: 0 });
  });

  it('waits for drain before writing the next batch', async () => {
    const dest = destination(true);
    const { logger } = capture();
    const log = new AccessLog(stdoutOnly, {
      logger,
      stdoutDestination: dest.stream,
      stdoutShipping: { batchSize: 5, flushInterval: 1 },
      scheduler,
    });
    for (let i = 0; i < 12; i++) log.push(record(i));
    await until(() => dest.chunks.length === 1);
    await scheduler.advance(20);
    expect(dest.chunks).toHaveLength(1); // the destination asked to wait
    // the batch it holds counts as buffered until it drains
    expect(log.stats().stdout).toMatchObject({ shipped: 0, buffered: 12 });
    dest.release();
    await until(() => dest.chunks.length === 2);
    expect(log.stats().stdout).toMatchObject({ shipped: 5, buffered: 7 });
    while (log.stats().stdout?.shipped !== 12) {
      dest.release();
      await scheduler.advance(2);
    }
    expect(dest.lines()).toHaveLength(12);
    await close(log, 1000);
  });

  it('survives a destination error: warns once, keeps records buffered, drops the oldest when full', async () => {
    const dest = destination();
    const { logs, logger } = capture();
    const log = new AccessLog(stdoutOnly, {
      logger,
      stdoutDestination: dest.stream,
      stdoutShipping: { batchSize: 2, flushInterval: 1, maxBuffer: 4, maxBackoff: 5 },
      scheduler,
    });
    dest.stream.destroy(new Error('EPIPE'));
    await new Promise((resolve) => setImmediate(resolve));
    for (let i = 0; i < 10; i++) log.push(record(i));
    await scheduler.advance(30);
    expectInvariant(log);
    expect(log.stats().stdout).toMatchObject({ enqueued: 10, shipped: 0, dropped: 6, buffered: 4 });
    expect(logs.filter((l) => l.msg === 'access log stdout failed')).toHaveLength(1);
    await close(log, 20);
    expect(log.stats().stdout).toMatchObject({ buffered: 0, droppedBy: { buffer_full: 6, shutdown: 4 } });
  });

  it('rejects a record that cannot be serialised instead of blocking its batch', async () => {
    const dest = destination();
    const { logger } = capture();
    const log = new AccessLog(stdoutOnly, {
      logger,
      stdoutDestination: dest.stream,
      stdoutShipping: { batchSize: 3, flushInterval: 1 },
      scheduler,
    });
    log.push(record(0));
    log.push({ ...record(1), bytesIn: 1n as unknown as number });
    log.push(record(2));
    await until(() => log.stats().stdout?.buffered === 0);
    expect(log.stats().stdout).toMatchObject({ shipped: 2, droppedBy: { rejected: 1 } });
    expect(dest.lines().map((l) => (JSON.parse(l) as AccessRecord).requestId)).toEqual(['req-0', 'req-2']);
    await close(log, 100);
  });

  it('counts records pushed after close as dropped (closed)', async () => {
    const dest = destination();
    const { logger } = capture();
    const log = new AccessLog(stdoutOnly, { logger, stdoutDestination: dest.stream });
    log.push(record(0));
    await log.close(1000);
    log.push(record(1));
    expect(log.stats().stdout).toMatchObject({
      enqueued: 2,
      shipped: 1,
      droppedBy: { closed: 1 },
      buffered: 0,
    });
    expect(dest.lines()).toHaveLength(1);
  });

  it('does nothing without a sink', async () => {
    const log = new AccessLog({ stdout: false }, { logger: capture().logger });
    expect(log.enabled).toBe(false);
    log.push(record(0));
    expect(log.stats()).toEqual({});
    await log.close(10);
  });
});

describe('access-log metrics', () => {
  type Sample = { labels: Record<string, string | number>; value: number };
  async function read(registry: Registry): Promise<Map<string, Sample[]>> {
    const all = (await registry.getMetricsAsJSON()) as Array<{ name: string; values: Sample[] }>;
    return new Map(all.map((m) => [m.name, m.values]));
  }
  const value = (samples: Sample[] | undefined, labels: Record<string, string>): number =>
    samples?.find((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value ?? NaN;

  it('exports the accounting per sink, obeying the invariant, across two logs on one registry', async () => {
    const registry = new Registry();
    const { logger } = capture();
    const dest = destination();
    const first = new AccessLog(stdoutOnly, {
      logger,
      registry,
      stdoutDestination: dest.stream,
      stdoutShipping: { batchSize: 4, flushInterval: 1, maxBuffer: 6 },
      scheduler,
    });
    for (let i = 0; i < 20; i++) first.push(record(i)); // 14 dropped at once (buffer_full)
    await until(() => first.stats().stdout?.buffered === 0);
    let m = await read(registry);
    expect(value(m.get('gatehouse_access_log_enqueued_total'), { sink: 'stdout' })).toBe(20);
    expect(value(m.get('gatehouse_access_log_shipped_total'), { sink: 'stdout' })).toBe(6);
    expect(
      value(m.get('gatehouse_access_log_dropped_total'), { sink: 'stdout', reason: 'buffer_full' }),
    ).toBe(14);
    expect(value(m.get('gatehouse_access_log_dropped_total'), { sink: 'stdout', reason: 'shutdown' })).toBe(
      0,
    );
    expect(value(m.get('gatehouse_access_log_buffered'), { sink: 'stdout' })).toBe(0);
    expect(m.get('gatehouse_access_log_dropped_total')).toHaveLength(5); // every reason, from the start

    await first.close(0); // detached: its numbers stay counted
    const second = new AccessLog(stdoutOnly, { logger, registry, stdoutDestination: destination().stream });
    for (let i = 0; i < 3; i++) second.push(record(i));
    m = await read(registry);
    const enqueued = value(m.get('gatehouse_access_log_enqueued_total'), { sink: 'stdout' });
    const shipped = value(m.get('gatehouse_access_log_shipped_total'), { sink: 'stdout' });
    const dropped = (m.get('gatehouse_access_log_dropped_total') ?? []).reduce((a, s) => a + s.value, 0);
    const buffered = value(m.get('gatehouse_access_log_buffered'), { sink: 'stdout' });
    expect({ enqueued, shipped, dropped, buffered }).toEqual({
      enqueued: 23,
      shipped: 6,
      dropped: 14,
      buffered: 3,
    });
    await second.close(1000);
    m = await read(registry);
    expect(value(m.get('gatehouse_access_log_shipped_total'), { sink: 'stdout' })).toBe(9);
    expect(value(m.get('gatehouse_access_log_buffered'), { sink: 'stdout' })).toBe(0);
    expect(m.get('gatehouse_access_log_enqueued_total')?.some((s) => s.labels.sink === 'elasticsearch')).toBe(
      false,
    );
  });
});
