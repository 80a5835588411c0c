/**
 * The per-sink shipper, driven by a manual scheduler and a scripted sink: batching by size and by
 * interval, one send in flight, backoff, per-record outcomes, drop-oldest, close, and the
 * invariant enqueued = shipped + dropped + buffered after every step.
 */
import fc from 'fast-check';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import {
  SinkShipper,
  backoffDelay,
  sortFailure,
  sortOutcomes,
  type ItemOutcome,
  type SendResult,
  type ShipperOptions,
  type Sink,
  type SinkStats,
} from '../../src/observability/access-log/shipper.js';
import { ManualScheduler, settle } from '../helpers/manual-scheduler.js';

type Call = { batch: number[]; signal: AbortSignal; answer(result: SendResult): void };

/** A sink whose sends wait for the test to answer them (or are answered by `auto`). */
class ScriptedSink implements Sink<number> {
  readonly name = 'elasticsearch';
  calls: Call[] = [];
  auto: ((batch: number[]) => SendResult) | null = null;
  closed = false;
  send(batch: readonly number[], signal: AbortSignal): Promise<SendResult> {
    const copy = [...batch];
    if (this.auto !== null) {
      this.calls.push({ batch: copy, signal, answer: () => undefined });
      return Promise.resolve(this.auto(copy));
    }
    return new Promise((resolve) => this.calls.push({ batch: copy, signal, answer: resolve }));
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
  get last(): Call {
    const call = this.calls.at(-1);
    if (call === undefined) throw new Error('no send yet');
    return call;
  }
}

const OPTIONS: ShipperOptions = { batchSize: 4, flushInterval: 100, maxBuffer: 10, maxBackoff: 1000 };
const OK: SendResult = { ok: true };
const DOWN: SendResult = { ok: false, error: 'ECONNREFUSED', charge: false };

function setup(options: Partial<ShipperOptions> = {}) {
  const scheduler = new ManualScheduler();
  const sink = new ScriptedSink();
  const logs: Array<{ level: number; msg: string }> = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line)) });
  // random() = 1: the backoff is its ceiling, so delays are exact
  const shipper = new SinkShipper(sink, { ...OPTIONS, ...options }, logger, { scheduler, random: () => 1 });
  let next = 0;
  const push = (n: number): number[] => {
    const pushed: number[] = [];
    for (let i = 0; i < n; i++) {
      pushed.push(next);
      shipper.push(next++);
      expectInvariant(shipper.stats());
    }
    return pushed;
  };
  return { scheduler, sink, shipper, logs, push };
}

function expectInvariant(s: SinkStats): void {
  expect(s.enqueued).toBe(s.shipped + s.dropped + s.buffered);
  expect(s.dropped).toBe(Object.values(s.droppedBy).reduce((a, b) => a + b, 0));
}

describe('backoffDelay', () => {
  it('doubles from flushInterval and stops at maxBackoff', () => {
    const ceilings = [1, 2, 3, 4, 5, 6, 40].map((n) => backoffDelay(n, 100, 1000, () => 1));
    expect(ceilings).toEqual([100, 200, 400, 800, 1000, 1000, 1000]);
  });

  it('jitters between half and all of the step', () => {
    expect(backoffDelay(3, 100, 1000, () => 0)).toBe(200);
    expect(backoffDelay(3, 100, 1000, () => 0.5)).toBe(300);
    for (let i = 0; i < 50; i++) {
      const d = backoffDelay(10, 100, 1000, Math.random);
      expect(d).toBeGreaterThanOrEqual(500);
      expect(d).toBeLessThanOrEqual(1000);
    }
  });

  it('never reaches zero, even with flushInterval 0', () => {
    expect(backoffDelay(1, 0, 1000, () => 0)).toBeGreaterThan(0);
  });
});

describe('sortOutcomes and sortFailure', () => {
  it('sorts shipped, rejected and retried records, charging retries', () => {
    const items: ItemOutcome[] = ['shipped', 'retry', 'rejected', 'retry', 'shipped'];
    expect(sortOutcomes(items, [0, 0, 0, 5, 2], 5)).toEqual({
      shipped: 2,
      rejected: 1,
      exhausted: 1,
      retry: [1],
      retryTries: [1],
    });
  });

  it('treats no items as all shipped, and a missing item as a retry', () => {
    expect(sortOutcomes(undefined, [3, 3], 5).shipped).toBe(2);
    expect(sortOutcomes(['shipped'], [0, 0], 5)).toMatchObject({ shipped: 1, retry: [1] });
  });

  it('retries a failed batch as is, or at one retry each when charged', () => {
    expect(sortFailure([0, 4, 5], false, 5)).toMatchObject({
      exhausted: 0,
      retry: [0, 1, 2],
      retryTries: [0, 4, 5],
    });
    expect(sortFailure([0, 4, 5], true, 5)).toMatchObject({
      exhausted: 1,
      retry: [0, 1],
      retryTries: [1, 5],
    });
  });
});

describe('SinkShipper batching', () => {
  it('sends as soon as a full batch is waiting, never more than batchSize', async () => {
    const { sink, push, scheduler } = setup();
    push(3);
    await settle();
    expect(sink.calls).toHaveLength(0);
    push(3);
    await scheduler.advance(0);
    expect(sink.calls.map((c) => c.batch)).toEqual([[0, 1, 2, 3]]);
  });

  it('sends a partial batch flushInterval after the first record', async () => {
    const { sink, push, scheduler, shipper } = setup();
    push(2);
    await scheduler.advance(99);
    expect(sink.calls).toHaveLength(0);
    await scheduler.advance(1);
    expect(sink.last.batch).toEqual([0, 1]);
    expect(shipper.stats()).toMatchObject({ buffered: 2, shipped: 0 });
    sink.last.answer(OK);
    await settle();
    expect(shipper.stats()).toMatchObject({ enqueued: 2, shipped: 2, buffered: 0 });
    expect(scheduler.pending).toEqual([]); // idle: no timer left running
  });

  it('keeps one send in flight; the next batch goes when it is answered', async () => {
    const { sink, push, scheduler, shipper } = setup();
    push(9);
    await scheduler.advance(0);
    expect(sink.calls).toHaveLength(1);
    await scheduler.advance(500);
    expect(sink.calls).toHaveLength(1);
    expectInvariant(shipper.stats());
    sink.last.answer(OK);
    await scheduler.advance(0);
    expect(sink.calls.map((c) => c.batch)).toEqual([
      [0, 1, 2, 3],
      [4, 5, 6, 7],
    ]);
    sink.last.answer(OK);
    await scheduler.advance(0);
    expect(sink.calls).toHaveLength(2); // the one left waits for the interval
    await scheduler.advance(100);
    expect(sink.last.batch).toEqual([8]);
  });
});

describe('SinkShipper failures', () => {
  it('keeps a failed batch buffered and backs off, doubling up to maxBackoff; success resets', async () => {
    const { sink, push, scheduler, shipper, logs } = setup();
    push(4);
    await scheduler.advance(0);
    const delays: number[] = [];
    for (let i = 0; i < 6; i++) {
      sink.last.answer(DOWN);
      await settle();
      expect(shipper.stats()).toMatchObject({ buffered: 4, shipped: 0, dropped: 0 });
      delays.push(...scheduler.pending);
      const calls = sink.calls.length;
      await scheduler.advance(scheduler.pending[0] ?? 0);
      expect(sink.calls).toHaveLength(calls + 1);
      expect(sink.last.batch).toEqual([0, 1, 2, 3]);
    }
    expect(delays).toEqual([100, 200, 400, 800, 1000, 1000]);
    // the batch is full while backing off, yet nothing goes before the backoff ends
    sink.last.answer(OK);
    await settle();
    push(4);
    await scheduler.advance(0);
    expect(sink.calls).toHaveLength(8);
    expect(logs.map((l) => l.msg)).toEqual([
      'access log sink failing: records kept and retried with backoff',
      'access log sink recovered',
    ]);
  });

  it('does not send during a backoff even when batches fill up', async () => {
    const { sink, push, scheduler } = setup();
    push(4);
    await scheduler.advance(0);
    sink.last.answer(DOWN);
    await settle();
    push(4);
    await scheduler.advance(99);
    expect(sink.calls).toHaveLength(1);
    await scheduler.advance(1);
    expect(sink.calls).toHaveLength(2);
  });

  it('retries 429/5xx items at the front in order and drops rejected ones', async () => {
    const { sink, push, scheduler, shipper } = setup();
    push(6);
    await scheduler.advance(0);
    sink.last.answer({ ok: true, items: ['shipped', 'retry', 'rejected', 'retry'] });
    await settle();
    expect(shipper.stats()).toMatchObject({ shipped: 1, buffered: 4, droppedBy: { rejected: 1 } });
    expectInvariant(shipper.stats());
    await scheduler.advance(scheduler.pending[0] ?? 0); // a push-back (429) also backs off
    expect(sink.last.batch).toEqual([1, 3, 4, 5]);
  });

  it('drops a record retried maxRetries times as retries_exhausted', async () => {
    const { sink, push, scheduler, shipper } = setup({ maxRetries: 2 });
    push(2);
    sink.auto = (batch) => ({ ok: true, items: batch.map((n) => (n === 0 ? 'retry' : 'shipped')) });
    for (let i = 0; i < 5; i++) await scheduler.advance(2000);
    expect(sink.calls.map((c) => c.batch)).toEqual([[0, 1], [0], [0]]);
    expect(shipper.stats()).toMatchObject({ shipped: 1, buffered: 0, droppedBy: { retries_exhausted: 1 } });
  });

  it('charges a refused request to its records, so a poison batch cannot block forever', async () => {
    const { sink, push, scheduler, shipper } = setup({ maxRetries: 3 });
    push(2);
    sink.auto = () => ({ ok: false, error: 'HTTP 413', charge: true });
    for (let i = 0; i < 10; i++) await scheduler.advance(2000);
    expect(sink.calls).toHaveLength(4);
    expect(shipper.stats()).toMatchObject({ buffered: 0, droppedBy: { retries_exhausted: 2 } });
  });

  it('never charges a sink that is down: records wait however long it lasts', async () => {
    const { sink, push, scheduler, shipper } = setup();
    push(2);
    sink.auto = () => DOWN;
    for (let i = 0; i < 20; i++) await scheduler.advance(2000);
    expect(sink.calls.length).toBeGreaterThan(10);
    expect(shipper.stats()).toMatchObject({ buffered: 2, dropped: 0 });
  });

  it('treats a send that throws or rejects as a failure', async () => {
    const { push, scheduler, shipper, sink } = setup();
    sink.send = () => {
      throw new Error('boom');
    };
    push(4);
    await scheduler.advance(0);
    expect(shipper.stats()).toMatchObject({ buffered: 4 });
    sink.send = () => Promise.reject(new Error('boom'));
    await scheduler.advance(100);
    expect(shipper.stats()).toMatchObject({ buffered: 4 });
    expect(scheduler.pending).toEqual([200]);
  });

  it('when full drops the oldest, including retried records older than the queue', async () => {
    const { sink, push, scheduler, shipper } = setup({ maxBuffer: 6 });
    push(4);
    await scheduler.advance(0); // 0..3 in flight
    push(8); // 4..11 into a queue of 6: 4 and 5 dropped
    expect(shipper.stats()).toMatchObject({ buffered: 10, droppedBy: { buffer_full: 2 } });
    sink.last.answer(DOWN); // 0..3 are older than the full queue: dropped
    await settle();
    expect(shipper.stats()).toMatchObject({ buffered: 6, droppedBy: { buffer_full: 6 } });
    sink.auto = () => OK;
    await scheduler.advance(5000);
    expect(sink.calls.slice(1).flatMap((c) => c.batch)).toEqual([6, 7, 8, 9, 10, 11]);
    expect(shipper.stats()).toMatchObject({ enqueued: 12, shipped: 6, dropped: 6, buffered: 0 });
  });

  it('keeps what fits of a partly retried batch when the queue filled meanwhile', async () => {
    const { sink, push, scheduler, shipper } = setup({ maxBuffer: 5 });
    push(4);
    await scheduler.advance(0);
    push(3);
    sink.last.answer({ ok: true, items: ['retry', 'retry', 'retry', 'shipped'] });
    await settle();
    // room for 2 of the 3 retries: the oldest (0) goes
    expect(shipper.stats()).toMatchObject({ shipped: 1, buffered: 5, droppedBy: { buffer_full: 1 } });
    sink.auto = () => OK;
    await scheduler.advance(5000);
    expect(sink.calls.slice(1).flatMap((c) => c.batch)).toEqual([1, 2, 4, 5, 6]);
  });
});

describe('SinkShipper close', () => {
  it('flushes everything buffered, then counts later pushes as closed', async () => {
    const { sink, push, scheduler, shipper } = setup({ maxBuffer: 100 });
    sink.auto = () => OK;
    push(10);
    const closed = shipper.close(1000);
    await scheduler.advance(0);
    await closed;
    expect(sink.calls.map((c) => c.batch.length)).toEqual([4, 4, 2]);
    expect(sink.closed).toBe(true);
    push(1);
    expect(shipper.stats()).toMatchObject({
      enqueued: 11,
      shipped: 10,
      buffered: 0,
      droppedBy: { closed: 1 },
    });
    expect(scheduler.pending).toEqual([]);
  });

  it('retries with backoff until the deadline, then drops the rest (in flight included) as shutdown', async () => {
    const { sink, push, scheduler, shipper } = setup({ maxBuffer: 100 });
    push(10);
    await scheduler.advance(0);
    sink.last.answer(DOWN);
    let done = false;
    void shipper.close(1000).then(() => (done = true));
    await scheduler.advance(0);
    sink.last.answer(DOWN); // closing sends at once, then backs off
    await scheduler.advance(999);
    expect(done).toBe(false);
    const inflight = sink.last;
    expect(inflight.signal.aborted).toBe(false);
    await scheduler.advance(1);
    expect(done).toBe(true);
    expect(inflight.signal.aborted).toBe(true);
    expect(shipper.stats()).toMatchObject({
      enqueued: 10,
      shipped: 0,
      buffered: 0,
      droppedBy: { shutdown: 10 },
    });
    inflight.answer(OK); // too late: already counted as dropped
    await settle();
    expect(shipper.stats()).toMatchObject({ shipped: 0, dropped: 10 });
  });

  it('with a zero timeout drops everything at once; close is idempotent', async () => {
    const { sink, push, shipper } = setup();
    push(3);
    const first = shipper.close(0);
    expect(shipper.close(5000)).toBe(first);
    await first;
    expect(sink.calls).toHaveLength(0);
    expect(shipper.stats()).toMatchObject({ buffered: 0, droppedBy: { shutdown: 3 } });
  });
});

describe('SinkShipper invariant under random operations', () => {
  type Step =
    | { do: 'push'; n: number }
    | { do: 'advance'; ms: number }
    | { do: 'answer'; result: 'ok' | 'down' | 'charged' | 'items'; seed: number }
    | { do: 'close'; ms: number };
  const step: fc.Arbitrary<Step> = fc.oneof(
    fc.record({ do: fc.constant('push' as const), n: fc.integer({ min: 1, max: 15 }) }),
    fc.record({ do: fc.constant('advance' as const), ms: fc.integer({ min: 0, max: 1500 }) }),
    fc.record({
      do: fc.constant('answer' as const),
      result: fc.constantFrom('ok' as const, 'down' as const, 'charged' as const, 'items' as const),
      seed: fc.nat(),
    }),
    fc.record({ do: fc.constant('close' as const), ms: fc.integer({ min: 0, max: 3000 }) }),
  );
  const outcomes: ItemOutcome[] = ['shipped', 'retry', 'rejected'];

  it('holds enqueued = shipped + dropped + buffered after every step, and ends with nothing buffered', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          batchSize: fc.integer({ min: 1, max: 6 }),
          maxBuffer: fc.integer({ min: 1, max: 12 }),
          flushInterval: fc.integer({ min: 0, max: 200 }),
          maxBackoff: fc.integer({ min: 1, max: 1000 }),
        }),
        fc.array(step, { maxLength: 40 }),
        async (options, steps) => {
          const { sink, push, scheduler, shipper } = setup(options);
          let answered = 0;
          const closes: Array<Promise<void>> = [];
          for (const s of steps) {
            if (s.do === 'push') push(s.n);
            else if (s.do === 'advance') await scheduler.advance(s.ms);
            else if (s.do === 'close') closes.push(shipper.close(s.ms));
            else if (answered < sink.calls.length) {
              const call = sink.calls[answered++] as Call;
              const result: SendResult =
                s.result === 'ok'
                  ? OK
                  : s.result === 'down'
                    ? DOWN
                    : s.result === 'charged'
                      ? { ok: false, error: 'HTTP 400', charge: true }
                      : {
                          ok: true,
                          items: call.batch.map((_, i) => outcomes[(s.seed + i * 7) % 3] as ItemOutcome),
                        };
              call.answer(result);
              await settle();
            }
            const stats = shipper.stats();
            expectInvariant(stats);
            expect(stats.buffered).toBeLessThanOrEqual(options.maxBuffer + options.batchSize);
          }
          // end: everything answered from now on, then closed
          sink.auto = () => OK;
          for (const call of sink.calls.slice(answered)) call.answer(OK);
          const closed = shipper.close(10_000);
          await scheduler.advance(20_000);
          await Promise.all([closed, ...closes]);
          const end = shipper.stats();
          expectInvariant(end);
          expect(end.buffered).toBe(0);
        },
      ),
      { numRuns: 150 },
    );
  });
});
