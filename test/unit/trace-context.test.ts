/** W3C trace context: parsing, ids, continuation, sampling, and the span's attributes. */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/observability/logger.js';
import {
  Tracing,
  forwardableTracestate,
  formatTraceparent,
  newSpanId,
  newTraceId,
  parseTraceparent,
  serverSpan,
  traceEndpoint,
} from '../../src/observability/tracing/index.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT = '00f067aa0ba902b7';
const VALID = `00-${TRACE}-${PARENT}-01`;
const HEX = /^[0-9a-f]+$/;
const ZERO = /^0+$/;

/** `value` with the character at `i` replaced by `c` */
const swap = (value: string, i: number, c: string): string => value.slice(0, i) + c + value.slice(i + 1);

describe('parseTraceparent', () => {
  it('reads a version 00 header', () => {
    expect(parseTraceparent(VALID)).toEqual({ traceId: TRACE, parentId: PARENT, flags: 1 });
    expect(parseTraceparent(`00-${TRACE}-${PARENT}-00`)?.flags).toBe(0);
    // flags other than `sampled` are kept for the caller to ignore, not refused
    expect(parseTraceparent(`00-${TRACE}-${PARENT}-ff`)?.flags).toBe(255);
    expect(parseTraceparent(`00-${TRACE}-${PARENT}-02`)?.flags).toBe(2);
  });

  it('refuses an absent or empty header', () => {
    expect(parseTraceparent(undefined)).toBeNull();
    expect(parseTraceparent('')).toBeNull();
  });

  it('refuses version 00 of any length but 55', () => {
    expect(parseTraceparent(VALID.slice(0, 54))).toBeNull();
    expect(parseTraceparent(`${VALID}0`)).toBeNull();
    expect(parseTraceparent(`${VALID}-extra`)).toBeNull();
    expect(parseTraceparent(` ${VALID}`)).toBeNull();
    // two headers joined by node
    expect(parseTraceparent(`${VALID}, ${VALID}`)).toBeNull();
  });

  it('refuses version ff and a version that is not lower-case hex', () => {
    expect(parseTraceparent(swap(swap(VALID, 0, 'f'), 1, 'f'))).toBeNull();
    expect(parseTraceparent(swap(VALID, 0, 'A'))).toBeNull();
    expect(parseTraceparent(swap(swap(VALID, 0, 'c'), 1, 'C'))).toBeNull();
    expect(parseTraceparent(swap(VALID, 1, 'z'))).toBeNull();
  });

  it('refuses upper-case hex in every field', () => {
    expect(parseTraceparent(`00-${TRACE.toUpperCase()}-${PARENT}-01`)).toBeNull();
    expect(parseTraceparent(`00-${TRACE}-${PARENT.toUpperCase()}-01`)).toBeNull();
    expect(parseTraceparent(`00-${TRACE}-${PARENT}-0A`)).toBeNull();
    expect(parseTraceparent(swap(VALID, 10, 'F'))).toBeNull();
  });

  it('refuses an all-zero trace id or parent id', () => {
    expect(parseTraceparent(`00-${'0'.repeat(32)}-${PARENT}-01`)).toBeNull();
    expect(parseTraceparent(`00-${TRACE}-${'0'.repeat(16)}-01`)).toBeNull();
  });

  it('refuses a wrong separator or a non-hex character anywhere', () => {
    for (const i of [2, 35, 52]) expect(parseTraceparent(swap(VALID, i, '_'))).toBeNull();
    for (let i = 0; i < VALID.length; i++) {
      if (i === 2 || i === 35 || i === 52) continue;
      expect(parseTraceparent(swap(VALID, i, 'g')), `position ${i}`).toBeNull();
      expect(parseTraceparent(swap(VALID, i, '-')), `position ${i}`).toBeNull();
    }
  });

  it('reads a future version by the version 00 layout', () => {
    const future = `cc-${TRACE}-${PARENT}-01`;
    expect(parseTraceparent(future)).toEqual({ traceId: TRACE, parentId: PARENT, flags: 1 });
    expect(parseTraceparent(`${future}-what-the-future-will-be-like`)?.traceId).toBe(TRACE);
    expect(parseTraceparent(`01-${TRACE}-${PARENT}-00-`)?.flags).toBe(0);
  });

  it('refuses a future version that is short or has no dash after the flags', () => {
    expect(parseTraceparent(`cc-${TRACE}-${PARENT}-0`)).toBeNull();
    expect(parseTraceparent(`cc-${TRACE}-${PARENT}-01what`)).toBeNull();
    expect(parseTraceparent(`cc-${TRACE}-${PARENT}-01.`)).toBeNull();
    expect(parseTraceparent(`cc-${'0'.repeat(32)}-${PARENT}-01-x`)).toBeNull();
  });

  it('round-trips what formatTraceparent writes', () => {
    const hexId = (bytes: number) =>
      fc
        .uint8Array({ minLength: bytes, maxLength: bytes })
        .filter((b) => b.some((x) => x !== 0))
        .map((b) => Buffer.from(b).toString('hex'));
    fc.assert(
      fc.property(hexId(16), hexId(8), fc.boolean(), (traceId, spanId, sampled) => {
        const value = formatTraceparent(traceId, spanId, sampled);
        expect(value).toHaveLength(55);
        expect(parseTraceparent(value)).toEqual({ traceId, parentId: spanId, flags: sampled ? 1 : 0 });
      }),
    );
  });
});

describe('forwardableTracestate', () => {
  it('forwards the value unchanged up to 512 characters, only with a valid traceparent', () => {
    const state = 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE';
    expect(forwardableTracestate(state, true)).toBe(state);
    expect(forwardableTracestate(state, false)).toBeNull();
    expect(forwardableTracestate('a'.repeat(512), true)).toHaveLength(512);
    expect(forwardableTracestate('a'.repeat(513), true)).toBeNull();
    expect(forwardableTracestate('', true)).toBeNull();
    expect(forwardableTracestate(undefined, true)).toBeNull();
  });
});

describe('ids', () => {
  it('are lower-case hex of the right length, never all zero, and distinct over 100k draws', () => {
    const traces = new Set<string>();
    const spans = new Set<string>();
    const malformed: string[] = [];
    // 100k draws of each walk the 4 KiB pool through hundreds of refills.
    for (let i = 0; i < 100_000; i++) {
      const t = newTraceId();
      const s = newSpanId();
      if (t.length !== 32 || !HEX.test(t) || ZERO.test(t)) malformed.push(t);
      if (s.length !== 16 || !HEX.test(s) || ZERO.test(s)) malformed.push(s);
      traces.add(t);
      spans.add(s);
    }
    expect(malformed).toEqual([]);
    expect(traces.size).toBe(100_000);
    expect(spans.size).toBe(100_000);
  });
});

describe('Tracing.begin: continuing a trace', () => {
  const tracing = new Tracing(undefined, silentLogger());

  it('keeps the trace id, draws a new span id, and makes the caller its parent', () => {
    const tc = tracing.begin(VALID, 'rojo=1');
    expect(tc.traceId).toBe(TRACE);
    expect(tc.parentSpanId).toBe(PARENT);
    expect(tc.spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(tc.spanId).not.toBe(PARENT);
    expect(tc.sampled).toBe(true);
    expect(tc.traceparent).toBe(`00-${TRACE}-${tc.spanId}-01`);
    expect(tc.tracestate).toBe('rojo=1');
    expect(tracing.begin(VALID, undefined).spanId).not.toBe(tc.spanId);
  });

  it("keeps the caller's unsampled flag and writes version 00 for a future version", () => {
    const tc = tracing.begin(`cc-${TRACE}-${PARENT}-00-future`, undefined);
    expect(tc.sampled).toBe(false);
    expect(tc.traceparent).toBe(`00-${TRACE}-${tc.spanId}-00`);
    expect(tc.tracestate).toBeNull();
  });

  it('starts a new trace for an invalid header and drops its tracestate', () => {
    const tc = tracing.begin(VALID.toUpperCase(), 'rojo=1');
    expect(tc.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(tc.traceId).not.toBe(TRACE.toUpperCase());
    expect(tc.parentSpanId).toBeNull();
    expect(tc.tracestate).toBeNull();
    expect(tc.sampled).toBe(false);
    expect(parseTraceparent(tc.traceparent)).toEqual({ traceId: tc.traceId, parentId: tc.spanId, flags: 0 });
  });

  it('never samples and never exports without otlpUrl, whatever the rate', () => {
    const propagateOnly = new Tracing({ sampleRate: 1, serviceName: 'g' }, silentLogger());
    expect(propagateOnly.exporting).toBe(false);
    for (let i = 0; i < 100; i++) expect(propagateOnly.begin(undefined, undefined).sampled).toBe(false);
    const continued = propagateOnly.begin(VALID, undefined);
    propagateOnly.end(continued, {
      route: '/',
      method: 'GET',
      status: 200,
      service: null,
      target: null,
      error: null,
    });
    expect(propagateOnly.stats()).toEqual({ queued: 0, exported: 0, dropped: 0, failed: 0 });
  });
});

describe('Tracing.begin: sampling with export configured', () => {
  // Nothing listens there; no span is ever recorded in these tests, so nothing is sent.
  const otlpUrl = 'http://127.0.0.1:1';
  const made: Tracing[] = [];
  const tracingAt = (sampleRate: number, random?: () => number): Tracing => {
    const t = new Tracing(
      { otlpUrl, sampleRate, serviceName: 'g' },
      silentLogger(),
      random ? { random } : {},
    );
    made.push(t);
    return t;
  };
  afterAll(() => Promise.all(made.map((t) => t.shutdown(1000))));

  it('samples no new trace at rate 0 and every one at rate 1, even at the extremes of the draw', () => {
    expect(tracingAt(0, () => 0).begin(undefined, undefined).sampled).toBe(false);
    expect(tracingAt(1, () => 0.9999999999).begin(undefined, undefined).sampled).toBe(true);
    const never = tracingAt(0);
    const always = tracingAt(1);
    for (let i = 0; i < 1000; i++) {
      expect(never.begin(undefined, undefined).sampled).toBe(false);
      expect(always.begin(undefined, undefined).sampled).toBe(true);
    }
  });

  it('samples a new trace when the draw is below the rate', () => {
    let draw = 0;
    const half = tracingAt(0.5, () => draw);
    draw = 0.49;
    expect(half.begin(undefined, undefined).sampled).toBe(true);
    draw = 0.5;
    expect(half.begin(undefined, undefined).sampled).toBe(false);
  });

  it("keeps the caller's flag on a continued trace, whatever the rate", () => {
    expect(tracingAt(0).begin(VALID, undefined).sampled).toBe(true);
    expect(tracingAt(1).begin(`00-${TRACE}-${PARENT}-00`, undefined).sampled).toBe(false);
  });

  it('does not hand an unsampled request to the exporter', () => {
    const t = tracingAt(1);
    const tc = t.begin(`00-${TRACE}-${PARENT}-00`, undefined);
    t.end(tc, { route: '/', method: 'GET', status: 200, service: null, target: null, error: null });
    expect(t.stats()).toEqual({ queued: 0, exported: 0, dropped: 0, failed: 0 });
  });
});

describe('serverSpan', () => {
  const base = {
    route: '/users/*',
    method: 'GET',
    status: 200,
    service: 'users',
    target: 'http://u:80',
    error: null,
  };

  it('names the span by method and route and uses the HTTP semantic conventions', () => {
    expect(serverSpan({ ...base, serverAddress: 'api.example', scheme: 'https' })).toEqual({
      name: 'GET /users/*',
      attributes: {
        'http.request.method': 'GET',
        'http.route': '/users/*',
        'http.response.status_code': 200,
        'url.scheme': 'https',
        'server.address': 'api.example',
        'gatehouse.service': 'users',
        'gatehouse.target': 'http://u:80',
      },
      error: false,
    });
  });

  it('leaves out what is unknown and names an unmatched request', () => {
    const span = serverSpan({ ...base, route: null, service: null, target: null, status: 404 });
    expect(span.name).toBe('GET unmatched');
    expect(span.attributes).toEqual({
      'http.request.method': 'GET',
      'http.response.status_code': 404,
      'url.scheme': 'http',
    });
    expect(span.error).toBe(false);
  });

  it('marks errors: a named one, or a 5xx by its status', () => {
    expect(serverSpan({ ...base, status: 504, error: 'upstream_timeout' })).toMatchObject({
      attributes: { 'error.type': 'upstream_timeout' },
      error: true,
    });
    expect(serverSpan({ ...base, status: 500 })).toMatchObject({
      attributes: { 'error.type': '500' },
      error: true,
    });
  });

  it('reports an unknown method as _OTHER so clients cannot mint span names', () => {
    const span = serverSpan({ ...base, method: 'BREW' });
    expect(span.name).toBe('HTTP /users/*');
    expect(span.attributes['http.request.method']).toBe('_OTHER');
    expect(span.attributes['http.request.method_original']).toBe('BREW');
  });
});

describe('traceEndpoint', () => {
  it('appends /v1/traces once', () => {
    expect(traceEndpoint('http://127.0.0.1:4318')).toBe('http://127.0.0.1:4318/v1/traces');
    expect(traceEndpoint('http://c:4318/otlp/')).toBe('http://c:4318/otlp/v1/traces');
  });
});
