/**
 * Malformed request lines, targets and headers thrown at both ports of a real gateway process
 * (the CLI, so that a crash shows as the process exiting): afterwards the process is alive,
 * both ports serve, and no handler failed. Bounded: a fixed seed, a few hundred cases, each on
 * its own connection that the client half-closes, so every case ends as soon as the gateway
 * has answered (or refused) it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { delay, RawClient } from '../helpers/hostile.js';
import { metricValue } from '../helpers/observe.js';
import { spawnCli, writeTempConfig, type CliProcess } from '../helpers/process.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const SEED = 20261205;
const RUNS = 400;
/** how long a case may go without an answer before the client half-closes */
const QUIET_MS = 100;
/** a case that has not closed by then is left (node's own timeouts are longer) */
const CASE_TIMEOUT_MS = 1500;

let upstream: Upstream;
let proc: CliProcess;
let dir: string;
let port: number;
let adminPort: number;

beforeAll(async () => {
  upstream = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'gatehouse-fuzz-'));
  const file = writeTempConfig(`
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
workers: 1
limits: { headersTimeout: 1s, requestTimeout: 2s, keepAliveTimeout: 200ms }
database: { file: '${join(dir, 'keys.db')}' }
auth: { apiKey: { secret: 'fuzz-secret-0123456789abcdef0123' } }
services:
  echo: { targets: ["${upstream.url}"] }
routes:
  - { name: keyed, match: { path: /keyed/** }, service: echo, auth: [apiKey] }
  - { name: all, match: { path: /** }, service: echo }
`);
  proc = spawnCli(['start', '-c', file], { LOG_LEVEL: 'info' });
  const ready = await proc.waitFor(/"port":(\d+),"adminPort":(\d+)[^\n]*gatehouse ready/);
  port = Number(ready[1]);
  adminPort = Number(ready[2]);
}, 20_000);

afterAll(async () => {
  if (proc.child.exitCode === null) {
    proc.child.kill('SIGTERM');
    await proc.exited;
  }
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * Text that is mostly printable and full of URL and header syntax (so that much of it gets past
 * node's parser to the handlers), sometimes any ASCII, sometimes any byte (latin1).
 */
const bytes = (maxLength: number) =>
  fc.oneof(
    {
      weight: 4,
      arbitrary: fc.string({
        unit: fc.constantFrom(...'/:@[]%?#.;\\ "<>{}|^`~!$&\'()*+,=abcXYZ019-_'),
        maxLength,
      }),
    },
    { weight: 1, arbitrary: fc.string({ unit: 'binary-ascii', maxLength }) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength }).map((a) => Buffer.from(a).toString('latin1')) },
  );

/** what a request target may hold as far as node's parser goes (no space, no control character) */
const pathText = (maxLength: number) =>
  fc.string({ unit: fc.constantFrom(...'/:@[]%?#.;\\"<>{}|^`~!$&\'()*+,=abcXYZ019-_'), maxLength });

const method = fc.oneof(
  { weight: 12, arbitrary: fc.constantFrom('GET', 'POST', 'HEAD', 'PUT', 'DELETE', 'OPTIONS', 'PATCH') },
  { weight: 1, arbitrary: fc.constantFrom('CONNECT', 'TRACE', 'PROPFIND', 'get', 'G\tT', '', 'GET GET') },
  { weight: 1, arbitrary: bytes(8) },
);

/** targets known to have broken parsers (`new URL` on `//a:99999/`), and mutations of paths */
const target = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '/',
      '/x',
      '//a:99999/',
      'http://[',
      '//',
      '///',
      '//[::1',
      '//a@b/',
      '*',
      'http://a/b',
      'https://x:0/',
      'http://a:99999/',
      '/%',
      '/%zz',
      '/%00',
      '/a/../../b',
      '/%2e%2e/x',
      '/a;b',
      '/a?%',
      '/?a=%zz&&=',
      '/\u00ff',
      '/readyz?verbose',
      '/readyz?%',
      '/metrics',
      '/reload',
      '/keys',
      '/keys/',
      '/keys/x/rotate',
      '/keys/../reload',
      '/openapi.json',
      '/services',
      '/keyed/x',
      'x:y',
      '?',
      '#',
    ),
  },
  {
    weight: 3,
    arbitrary: fc
      .tuple(fc.constantFrom('/', '//', 'http://', '/keys/', '/readyz?', '/keyed/', ''), pathText(24))
      .map(([a, b]) => a + b),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.constantFrom('/', ''), bytes(24)).map(([a, b]) => a + b),
  },
  { weight: 1, arbitrary: fc.constant('/' + 'a'.repeat(9000)) },
);

const version = fc.oneof(
  { weight: 8, arbitrary: fc.constant('HTTP/1.1') },
  { weight: 2, arbitrary: fc.constantFrom('HTTP/1.0', 'HTTP/0.9', 'HTTP/2.0', 'HTTP/1.1 ', 'http/1.1', '') },
);

const headerValue = (values: string[]) =>
  fc.oneof({ weight: 5, arbitrary: fc.constantFrom(...values) }, { weight: 1, arbitrary: bytes(16) });

const header = fc.oneof(
  fc.tuple(
    fc.constant('Host'),
    headerValue(['x', 'x:99999', 'x:0', 'x:', '[', '[::1]:1', '[::1]:99999', 'a b', '', 'a:b:c']),
  ),
  fc.tuple(fc.constant('Content-Length'), headerValue(['0', '5', '-1', '1e3', '99999999999999999', ' 4'])),
  fc.tuple(fc.constant('Transfer-Encoding'), headerValue(['chunked', 'gzip, chunked', 'identity'])),
  fc.tuple(fc.constant('Connection'), headerValue(['upgrade', 'close', 'keep-alive', 'x-request-id'])),
  fc.tuple(fc.constant('Upgrade'), headerValue(['websocket', 'h2c', 'WebSocket'])),
  fc.tuple(
    fc.constantFrom('Authorization', 'authorization'),
    headerValue(['Bearer x', 'bearer', 'Bearer ', 'BEARER  y', 'Basic eA==']),
  ),
  fc.tuple(fc.constant('X-API-Key'), headerValue(['gh_x', 'gh_' + 'A'.repeat(100)])),
  fc.tuple(fc.constant('X-Request-Id'), headerValue(['a', 'a:b', 'x'.repeat(200)])),
  fc.tuple(fc.constant('Expect'), headerValue(['100-continue', '200-ok'])),
  fc.tuple(fc.constant('Content-Type'), headerValue(['application/json', 'text/plain'])),
  fc.tuple(fc.constant('traceparent'), headerValue(['00-' + '1'.repeat(32) + '-' + '2'.repeat(16) + '-01'])),
  fc.tuple(fc.stringMatching(/^[A-Za-z0-9_-]{1,12}$/), bytes(16)),
  fc.tuple(bytes(10), bytes(16)),
);

const request = fc.record({
  admin: fc.boolean(),
  method,
  target,
  version,
  withHost: fc.oneof(
    { weight: 4, arbitrary: fc.constant(true) },
    { weight: 1, arbitrary: fc.constant(false) },
  ),
  headers: fc.array(header, { maxLength: 5 }),
  eol: fc.oneof({ weight: 9, arbitrary: fc.constant('\r\n') }, { weight: 1, arbitrary: fc.constant('\n') }),
  body: fc.oneof(fc.constant(''), fc.constant('{"name":"n","tier":"t"}'), bytes(32)),
});

type Case = typeof request extends fc.Arbitrary<infer T> ? T : never;

function payload(c: Case): Buffer {
  const lines = [`${c.method} ${c.target} ${c.version}`.trimEnd()];
  if (c.withHost) lines.push('Host: gw.test');
  for (const [name, value] of c.headers) lines.push(`${name}: ${value}`);
  return Buffer.from(lines.join(c.eol) + c.eol + c.eol + c.body, 'latin1');
}

/**
 * Sends the bytes and waits for the first complete answer, or the close. A request still waiting
 * (for a body it announced, say) after `QUIET_MS` gets the client's FIN, which node's parser turns
 * into an answer or a close; `false` when the port refused the connection.
 */
async function send(to: number, data: Buffer): Promise<boolean> {
  const client = await RawClient.open(to).catch(() => null);
  if (client === null) return false;
  client.write(data);
  await Promise.race([client.responses(1).catch(() => undefined), delay(QUIET_MS)]);
  if (!client.closed) {
    client.socket.end();
    await Promise.race([client.waitClosed(), delay(CASE_TIMEOUT_MS)]);
  }
  client.destroy();
  return true;
}

describe('fuzzing both ports of a real gateway process', () => {
  it(`${RUNS} malformed requests (seed ${SEED}) end neither the process nor its service`, async () => {
    await fc.assert(
      fc.asyncProperty(request, async (c) => {
        const to = c.admin ? adminPort : port;
        const connected = await send(to, payload(c));
        // a crash may land a moment after the answer: a fresh connection must still be accepted
        const next = await send(to, Buffer.from('GET /livez HTTP/1.1\r\nHost: x\r\n\r\n'));
        return connected && next && proc.child.exitCode === null;
      }),
      // no shrinking: a crashed process fails every later case, which would mislead the shrinker
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );
    expect(proc.child.exitCode, proc.output()).toBeNull();
    expect((await fetch(`http://127.0.0.1:${port}/after-fuzz`)).status).toBe(200);
    expect((await fetch(`http://127.0.0.1:${adminPort}/livez`)).status).toBe(200);
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    // the boundary catches handler failures; the fuzz must not have found any
    expect(metricValue(metrics, 'gatehouse_handler_failures_total', { port: 'proxy' })).toBe(0);
    expect(metricValue(metrics, 'gatehouse_handler_failures_total', { port: 'admin' })).toBe(0);
    expect(metrics).toContain('gatehouse_handler_failures_total');
    expect(proc.output()).not.toMatch(/uncaught|unhandled/i);
  }, 120_000);
});
