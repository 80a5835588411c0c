/**
 * Hostile trace context through the real gateway: whatever a client sends as `traceparent` or
 * `tracestate`, the upstream receives exactly one well-formed `traceparent` (the gateway's), and a
 * `tracestate` only when it belongs to a valid, continued trace and is within bounds.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { exchange, noConnectionsLeft, startRecordingUpstream, type Recorded } from '../helpers/hostile.js';
import type { Upstream } from '../helpers/upstream.js';

let upstream: Upstream;
let requests: Recorded[];
let gw: TestGateway;

beforeAll(async () => {
  ({ upstream, requests } = await startRecordingUpstream());
  gw = await startGateway(`
services:
  echo: { targets: ["${upstream.url}"] }
routes:
  - { name: public, match: { path: /** }, service: echo }
`);
});
afterAll(async () => {
  await gw.close();
  await upstream.close();
});
afterEach(async () => {
  await noConnectionsLeft(gw);
  requests.length = 0;
});

const VALID = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const WELL_FORMED = /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/;

/** Sends the header lines; returns every trace header the upstream got, by name. */
async function traceHeadersUpstreamGot(
  lines: string,
): Promise<{ traceparent: string[]; tracestate: string[] }> {
  const payload = `GET /t HTTP/1.1\r\nHost: x\r\n${lines}Connection: close\r\n\r\n`;
  const { responses } = await exchange(gw.gateway.port, Buffer.from(payload, 'latin1'));
  expect(responses[0]?.status).toBe(200);
  const raw = requests[0]?.rawHeaders ?? [];
  const values = (name: string) => raw.filter((_v, i) => i % 2 === 1 && raw[i - 1]?.toLowerCase() === name);
  return { traceparent: values('traceparent'), tracestate: values('tracestate') };
}

describe('trace context from hostile clients', () => {
  it.each([
    ['upper-case hex', VALID.toUpperCase()],
    ['all-zero trace id', '00-00000000000000000000000000000000-00f067aa0ba902b7-01'],
    ['all-zero parent', '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01'],
    ['version ff', 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
    ['too short', '00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01'],
    ['trailing junk on version 00', `${VALID}-extra`],
    ['a huge value', `00-${'a'.repeat(8000)}`],
    ['script', '<script>alert(1)</script>'],
  ])('%s: a new trace is started, the client value never forwarded', async (_name, value) => {
    const got = await traceHeadersUpstreamGot(`traceparent: ${value}\r\ntracestate: a=b\r\n`);
    expect(got.traceparent).toHaveLength(1);
    expect(got.traceparent[0]).toMatch(WELL_FORMED);
    expect(got.traceparent[0]).not.toContain('4bf92f3577b34da6a3ce929d0e0e4736');
    expect(got.tracestate).toEqual([]); // a state without a valid parent is dropped
  });

  it('two traceparent headers: neither is trusted', async () => {
    const other = '00-11111111111111111111111111111111-2222222222222222-01';
    const got = await traceHeadersUpstreamGot(`traceparent: ${VALID}\r\ntraceparent: ${other}\r\n`);
    expect(got.traceparent).toHaveLength(1);
    expect(got.traceparent[0]).toMatch(WELL_FORMED);
    expect(got.traceparent[0]).not.toMatch(/4bf92f35|11111111/);
  });

  it('an oversized tracestate is dropped, a valid one continued once', async () => {
    const big = await traceHeadersUpstreamGot(
      `traceparent: ${VALID}\r\ntracestate: k=${'v'.repeat(600)}\r\n`,
    );
    expect(big.traceparent[0]).toMatch(/^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/);
    expect(big.tracestate).toEqual([]);
    requests.length = 0;
    const ok = await traceHeadersUpstreamGot(
      `traceparent: ${VALID}\r\ntracestate: a=1\r\ntracestate: b=2\r\n`,
    );
    expect(ok.tracestate).toEqual(['a=1, b=2']);
  });

  it('Connection cannot strip the gateway’s traceparent, nor smuggle the client’s', async () => {
    const payload = `GET /t HTTP/1.1\r\nHost: x\r\ntraceparent: ${VALID}\r\nConnection: close, traceparent\r\n\r\n`;
    const { responses } = await exchange(gw.gateway.port, Buffer.from(payload, 'latin1'));
    expect(responses[0]?.status).toBe(200);
    const raw = requests[0]?.rawHeaders ?? [];
    const tp = raw.filter((_v, i) => i % 2 === 1 && raw[i - 1]?.toLowerCase() === 'traceparent');
    expect(tp).toHaveLength(1);
    expect(tp[0]).toMatch(/^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/);
    expect(tp[0]).not.toContain('00f067aa0ba902b7');
  });
});
