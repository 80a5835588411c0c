/**
 * Both ports against input meant to break them, through the real gateway: targets that made the
 * admin port throw (and end the process), handler failures on either port (injected: the code
 * has none we know of, which the fuzz in fuzz-ports.test.ts keeps checking), requests node's
 * parser refuses (counted and logged at a bounded rate), `Host` ports, and the admin token's
 * scheme in any case.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { KeysAdmin } from '../../src/admin/keys.js';
import type { RequestStage } from '../../src/stages/stage.js';
import type { DataPlaneState } from '../../src/server/data-plane.js';
import { Gateway } from '../../src/server/gateway.js';
import { configFrom, TestGateway } from '../helpers/gateway.js';
import { exchange, RawClient } from '../helpers/hostile.js';
import { expectProblem, instanceFor, request } from '../helpers/http-client.js';
import { metric, scrape, metricValue, waitFor } from '../helpers/observe.js';
import { spawnCli, writeTempConfig, type CliProcess } from '../helpers/process.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const TOKEN = 'admin-token-0123456789';
const H = 'Host: gw.test\r\n';

let upstream: Upstream;
beforeAll(async () => {
  upstream = await startUpstream();
});
afterAll(async () => {
  await upstream.close();
});

describe('the admin port survives targets `new URL` refuses (a real process, two workers)', () => {
  let proc: CliProcess;
  let adminPort: number;

  beforeAll(async () => {
    proc = spawnCli(
      [
        'start',
        '-c',
        writeTempConfig(`
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0, token: ${TOKEN} }
workers: 2
services: { echo: { targets: ["${upstream.url}"] } }
routes: [ { name: all, match: { path: /** }, service: echo } ]
`),
      ],
      { LOG_LEVEL: 'info' },
    );
    await proc.waitFor(/gatehouse ready[\s\S]*gatehouse ready/, 20_000);
    adminPort = Number(/"adminPort":(\d+)/.exec(proc.output())?.[1]);
  }, 30_000);

  afterAll(async () => {
    if (proc.child.exitCode === null) {
      proc.child.kill('SIGTERM');
      await proc.exited;
    }
  });

  it('answers each of them, without a token, and no worker dies', async () => {
    const cases: Array<[string, number, string]> = [
      ['//a:99999/', 401, 'unauthorized_admin'], // read as the path /a:99999/, which needs the token
      ['http://[', 400, 'bad_request'],
      ['http://a:99999/metrics', 400, 'bad_request'],
      ['//[::1/livez', 401, 'unauthorized_admin'],
    ];
    // more requests than workers: before the fix, each one ended the worker that took it
    for (let round = 0; round < 3; round++) {
      for (const [target, status, code] of cases) {
        const { responses } = await exchange(
          adminPort,
          `GET ${target} HTTP/1.1\r\n${H}Connection: close\r\n\r\n`,
        );
        expect(
          responses.map((r) => r.status),
          target,
        ).toEqual([status]);
        const [res] = responses;
        expect(JSON.parse(res?.body ?? '')).toMatchObject({
          code,
          instance: `urn:uuid:${res?.headers['x-request-id']}`,
        });
      }
    }
    expect((await fetch(`http://127.0.0.1:${adminPort}/livez`)).status).toBe(200);
    expect(proc.child.exitCode).toBeNull();
    expect(proc.output()).not.toMatch(/worker died|ERR_INVALID_URL/);
  });
});

/** A gateway in this process, with its log lines captured. */
async function startLogged(yaml: string): Promise<{ gw: TestGateway; logs: () => LogLine[] }> {
  let text = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  const admin = /^admin:/m.test(yaml) ? '' : 'admin: { host: 127.0.0.1, port: 0 }\n';
  const config = configFrom(`listen: { host: 127.0.0.1, port: 0 }\n${admin}${yaml}`);
  const gw = new TestGateway(await Gateway.start(config, { logger: pino({ level: 'info' }, sink) }));
  const logs = () =>
    text
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as LogLine);
  return { gw, logs };
}

type LogLine = { level: number; msg: string } & Record<string, unknown>;

const stateOf = (gw: TestGateway) => (gw.gateway as unknown as { state: DataPlaneState }).state;

describe('a handler that fails answers 500, is counted and logged, and the process serves on', () => {
  let gw: TestGateway;
  let logs: () => LogLine[];
  const restore: Array<() => void> = [];

  beforeAll(async () => {
    ({ gw, logs } = await startLogged(`
services: { echo: { targets: ["${upstream.url}"] } }
routes: [ { name: all, match: { path: /** }, service: echo } ]
`));
  });
  afterEach(async () => {
    for (const undo of restore.splice(0)) undo();
    // whatever was injected, the gateway still serves
    expect((await request(`${gw.url}/after`)).status).toBe(200);
    expect((await request(`${gw.adminUrl}/livez`)).status).toBe(200);
  });
  afterAll(async () => {
    await gw.close();
  });

  /** Replaces `obj[key]` until the end of the test. */
  function inject<T extends object, K extends keyof T>(obj: T, key: K, value: T[K]): void {
    const had = Object.prototype.hasOwnProperty.call(obj, key);
    const before = obj[key];
    obj[key] = value;
    restore.push(() => {
      if (had) obj[key] = before;
      else delete obj[key];
    });
  }
  const boom = (where: string) => () => {
    throw new Error(`injected failure in ${where}`);
  };
  const route = () => {
    const r = stateOf(gw).runtime.router.match('gw.test', 'GET', '/x');
    if (r === undefined) throw new Error('no route');
    return r;
  };
  function withStage(stage: RequestStage): void {
    const stages = route().stages as RequestStage[];
    stages.unshift(stage);
    restore.push(() => stages.splice(stages.indexOf(stage), 1));
  }
  const failures = async (port: string) => metric(gw, 'gatehouse_handler_failures_total', { port });
  const failureLines = () => logs().filter((l) => l.msg === 'request handler failed');

  it('proxy: a throw before the stages (routing)', async () => {
    const before = await failures('proxy');
    const lines = failureLines().length;
    const router = stateOf(gw).runtime.router;
    inject(router, 'match', boom('routing'));
    const reply = await request(`${gw.url}/x`, { headers: { 'x-request-id': 'fail-1' } });
    const p = expectProblem(reply, 500, 'internal_error');
    expect(p.instance).toBe('tag:gatehouse.dev,2026:request:fail-1');
    expect(reply.headers['connection']).toBe('close');
    expect(await failures('proxy')).toBe(before + 1);
    const line = failureLines()[lines];
    expect(line).toMatchObject({ level: 50, port: 'proxy', requestId: 'fail-1' });
    expect(JSON.stringify(line?.['err'])).toContain('injected failure in routing');
  });

  it('proxy: a throw after a stage went async (an unhandled rejection before)', async () => {
    const before = await failures('proxy');
    withStage({ onRequest: () => Promise.resolve(undefined) });
    inject(route().service!.breaker, 'admit', boom('forward'));
    expectProblem(await request(`${gw.url}/x`), 500, 'internal_error');
    expect(await failures('proxy')).toBe(before + 1);
  });

  it('proxy: a stage that throws or rejects is a handler failure too', async () => {
    const before = await failures('proxy');
    withStage({ onRequest: boom('a stage') });
    expectProblem(await request(`${gw.url}/x`), 500, 'internal_error');
    for (const undo of restore.splice(0)) undo();
    withStage({ onRequest: () => Promise.reject(new Error('injected rejection')) });
    expectProblem(await request(`${gw.url}/x`), 500, 'internal_error');
    expect(await failures('proxy')).toBe(before + 2);
  });

  it('proxy: an upgrade whose handler throws gets a 500 on its socket', async () => {
    const before = await failures('proxy');
    inject(route().service!.breaker, 'admit', boom('upgrade'));
    const { responses, closed } = await exchange(
      gw.gateway.port,
      `GET /ws HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: websocket\r\nX-Request-Id: up-1\r\n\r\n`,
    );
    expect(closed).toBe(true);
    expect(responses.map((r) => r.status)).toEqual([500]);
    expect(JSON.parse(responses[0]?.body ?? '')).toMatchObject({
      code: 'internal_error',
      instance: 'tag:gatehouse.dev,2026:request:up-1',
    });
    expect(await failures('proxy')).toBe(before + 1);
  });

  it('proxy: an upgrade that throws before its chain (routing) gets a 500 too', async () => {
    const before = await failures('proxy');
    inject(stateOf(gw).runtime.router, 'match', boom('upgrade routing'));
    const { responses } = await exchange(
      gw.gateway.port,
      `GET /ws HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n`,
    );
    expect(responses.map((r) => r.status)).toEqual([500]);
    expect(await failures('proxy')).toBe(before + 1);
  });

  it("proxy: a write after a response's end (an unheard 'error' event before)", async () => {
    const before = await failures('proxy');
    withStage({
      // late-write
      onRequest: (ctx) => {
        // the answer's own end() is followed by one write too many
        const res = ctx.res;
        const end = res.end.bind(res) as (body: string) => void;
        res.end = ((body: string) => {
          end(body);
          res.write('late');
          return res;
        }) as typeof res.end;
        return { status: 404, code: 'no_route', title: 'Not Found', detail: 'injected' };
      },
    });
    expectProblem(await request(`${gw.url}/x`), 404, 'no_route');
    await waitFor(async () => (await failures('proxy')) === before + 1, 'the failure to be counted');
  });

  it('admin: a key store that throws is a 503 store_unavailable, not a handler failure', async () => {
    const before = await failures('admin');
    const keys = (gw.gateway as unknown as { keys: KeysAdmin }).keys;
    // handlers answer with values (the server writes): a failing store is reported as such
    inject(keys, 'open', () => Promise.resolve(null as never));
    expectProblem(await request(`${gw.adminUrl}/keys/AAAAAAAAAAAA`), 503, 'store_unavailable');
    for (const undo of restore.splice(0)) undo();
    expect(await failures('admin')).toBe(before);
  });

  it('admin: a throw in a handler', async () => {
    const before = await failures('admin');
    const service = [...stateOf(gw).runtime.services.values()][0];
    if (service === undefined) throw new Error('no service');
    inject(service, 'snapshot', boom('GET /services') as never);
    const reply = await request(`${gw.adminUrl}/services`);
    expectProblem(reply, 500, 'internal_error');
    expect(await failures('admin')).toBe(before + 1);
    expect(failureLines().at(-1)).toMatchObject({
      port: 'admin',
      requestId: reply.headers['x-request-id'],
    });
  });

  it("admin: a throw inside a promise's continuation (an unhandled rejection before)", async () => {
    const before = await failures('admin');
    // /metrics then answers with a body Buffer.byteLength refuses
    inject(gw.gateway.metrics.registry, 'metrics', (() => Promise.resolve({})) as never);
    expectProblem(await request(`${gw.adminUrl}/metrics`), 500, 'internal_error');
    for (const undo of restore.splice(0)) undo();
    expect(await failures('admin')).toBe(before + 1);
  });
});

describe("requests node's parser refuses are counted and logged at a bounded rate", () => {
  let gw: TestGateway;
  let logs: () => LogLine[];

  beforeAll(async () => {
    ({ gw, logs } = await startLogged(`
limits: { headersTimeout: 400ms, maxHeaderSize: 4096 }
services: { echo: { targets: ["${upstream.url}"] } }
routes: [ { name: all, match: { path: /** }, service: echo } ]
`));
  });
  afterAll(async () => {
    await gw.close();
  });

  const refused = () => logs().filter((l) => l.msg === 'request refused by the HTTP parser');
  const suppressed = () =>
    logs()
      .filter((l) => l.msg === 'refused requests not logged')
      .reduce((n, l) => n + (l['suppressed'] as number), 0);

  it('a burst of smuggling attempts: every one counted, 10 lines a second, the rest summed up', async () => {
    const N = 40;
    const answers = await Promise.all(
      Array.from({ length: N }, () =>
        exchange(
          gw.gateway.port,
          `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n`,
        ),
      ),
    );
    for (const a of answers) expect(a.responses.map((r) => r.status)).toEqual([400]);
    const text = await scrape(gw);
    expect(
      metricValue(text, 'gatehouse_unparsed_requests_total', {
        status: '400',
        reason: 'HPE_INVALID_TRANSFER_ENCODING',
      }),
    ).toBe(N);
    // not requests: no route, method or duration to count them by
    expect(metricValue(text, 'gatehouse_requests_total', { route: '', status: '400' })).toBe(0);
    await waitFor(() => refused().length + suppressed() === N, 'the suppressed count', 3000);
    // at most 10 lines per one-second window (a slow machine may spread the burst over two)
    expect(refused().length).toBeGreaterThanOrEqual(10);
    expect(refused().length).toBeLessThanOrEqual(20);
    expect(suppressed()).toBeGreaterThan(0);
    // a line names what the client was told: its request id is the answer's
    const ids = new Set(answers.map((a) => a.responses[0]?.headers['x-request-id']));
    for (const line of refused()) {
      expect(line).toMatchObject({
        level: 40,
        status: 400,
        error: 'bad_request',
        reason: 'HPE_INVALID_TRANSFER_ENCODING',
        clientIp: '127.0.0.1',
      });
      expect(ids.has(line['requestId'] as string)).toBe(true);
    }
    const [first] = answers[0]?.responses ?? [];
    expect(JSON.parse(first?.body ?? '').instance).toBe(instanceFor(first?.headers['x-request-id'] ?? ''));
  });

  it('oversized headers (431) and a slowloris (408) are counted with their reason', async () => {
    const big = await exchange(gw.gateway.port, `GET / HTTP/1.1\r\n${H}X-Big: ${'a'.repeat(5000)}\r\n\r\n`);
    expect(big.responses.map((r) => r.status)).toEqual([431]);
    const slow = await RawClient.open(gw.gateway.port);
    slow.write(`GET / HTTP/1.1\r\n${H}X-Slow: 1\r\n`); // never finishes its headers
    const [timeout] = await slow.responses(1);
    expect(timeout?.status).toBe(408);
    slow.destroy();
    const text = await scrape(gw);
    expect(
      metricValue(text, 'gatehouse_unparsed_requests_total', {
        status: '431',
        reason: 'HPE_HEADER_OVERFLOW',
      }),
    ).toBe(1);
    expect(
      metricValue(text, 'gatehouse_unparsed_requests_total', {
        status: '408',
        // node (since 18) reports a headers timeout with the request timeout's code
        reason: 'ERR_HTTP_REQUEST_TIMEOUT',
      }),
    ).toBe(1);
  });
});

describe('Host ports and the admin token scheme', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    ({ gw } = await startLogged(`
admin: { host: 127.0.0.1, port: 0, token: ${TOKEN} }
services: { echo: { targets: ["${upstream.url}"] } }
routes: [ { name: all, match: { path: /** }, service: echo } ]
`));
  });
  afterAll(async () => {
    await gw.close();
  });

  it.each([
    ['x:99999', 400],
    ['x:0', 400],
    ['x:65536', 400],
    ['[::1]:0', 400],
    ['x:1', 200],
    ['x:65535', 200],
    ['[::1]:8080', 200],
  ])('Host: %s → %i', async (host, status) => {
    const { responses } = await exchange(
      gw.gateway.port,
      `GET / HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
    );
    expect(responses.map((r) => r.status)).toEqual([status]);
    if (status === 400) expect(JSON.parse(responses[0]?.body ?? '').detail).toBe('invalid Host header');
  });

  it.each([`Bearer ${TOKEN}`, `bearer ${TOKEN}`, `BEARER ${TOKEN}`, `bEaReR   ${TOKEN}`])(
    'the admin API takes Authorization: %s',
    async (authorization) => {
      expect((await request(`${gw.adminUrl}/services`, { headers: { authorization } })).status).toBe(200);
    },
  );

  it.each([
    '',
    'bearer',
    'bearer ',
    `Bearer${TOKEN}`,
    `Basic ${TOKEN}`,
    `bearer ${TOKEN}x`,
    `Token ${TOKEN}`,
  ])('and refuses Authorization: %j', async (authorization) => {
    const reply = await request(`${gw.adminUrl}/services`, { headers: { authorization } });
    expectProblem(reply, 401, 'unauthorized_admin');
  });
});
