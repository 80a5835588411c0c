/**
 * Hostile request targets through the real gateway: the path is normalised (or refused) once,
 * and the route chosen and the path the upstream receives are the same normalised path.
 * A route `/public/**` can never be escaped into another upstream path by encoding tricks.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseRequestTarget } from '../../src/router/request-target.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { exchange, noConnectionsLeft, startRecordingUpstream, type Recorded } from '../helpers/hostile.js';
import type { Upstream } from '../helpers/upstream.js';

let pub: { upstream: Upstream; requests: Recorded[] };
let adm: { upstream: Upstream; requests: Recorded[] };
let gw: TestGateway;

beforeAll(async () => {
  pub = await startRecordingUpstream();
  adm = await startRecordingUpstream();
  gw = await startGateway(`
limits: { keepAliveTimeout: 300ms, maxUrlLength: 1kb }
services:
  pub: { targets: ["${pub.upstream.url}"] }
  adm: { targets: ["${adm.upstream.url}"] }
routes:
  - { name: public, match: { path: /public/** }, service: pub }
  - { name: admin, match: { path: /admin/**, host: admin.internal }, service: adm }
  - { name: api, match: { path: /api/** }, service: pub, stripPrefix: /api }
  - { name: root, match: { path: / }, service: pub }
`);
});

afterAll(async () => {
  await gw.close();
  await pub.upstream.close();
  await adm.upstream.close();
});

afterEach(async () => {
  await noConnectionsLeft(gw);
  pub.requests.length = 0;
  adm.requests.length = 0;
});

/** One request with exactly this target; the answer, and what each upstream got. */
async function send(target: string, host = 'gw.test') {
  const { responses, closed } = await exchange(
    gw.gateway.port,
    Buffer.from(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`, 'latin1'),
  );
  expect(closed).toBe(true);
  expect(responses).toHaveLength(1);
  const res = responses[0] as NonNullable<(typeof responses)[0]>;
  return {
    status: res.status,
    res,
    body: JSON.parse(res.body) as { code?: string; detail?: string; url?: string },
    pub: pub.requests.map((r) => r.url),
    adm: adm.requests.map((r) => r.url),
  };
}

describe('paths that stay inside /public reach the public upstream normalised', () => {
  const cases: Array<[string, string]> = [
    ['/public/a', '/public/a'],
    ['/public/./a', '/public/a'],
    ['/public/a/../b', '/public/b'],
    ['/public/a/%2e%2e/b', '/public/b'],
    ['/public/a/%2E%2e/b', '/public/b'],
    ['/public//a///b', '/public/a/b'],
    ['//public/a', '/public/a'],
    ['/public/%7Euser/%41', '/public/~user/A'],
    ['/public/a%3fb?x=%2F..', '/public/a%3Fb?x=%2F..'],
    ['/public/a"b', '/public/a%22b'],
    ['/public/caf%c3%a9', '/public/caf%C3%A9'],
    ['/public/a%3bb=1', '/public/a%3Bb=1'],
    ['/public/a/.', '/public/a/'],
  ];
  it.each(cases)('%s → %s', async (target, upstreamPath) => {
    const got = await send(target);
    expect(got.status).toBe(200);
    expect(got.pub).toEqual([upstreamPath]);
    expect(got.adm).toEqual([]);
    // the routing decision used the same path the upstream saw
    const parsed = parseRequestTarget(target);
    expect(parsed.ok && parsed.path + (parsed.query ? `?${parsed.query}` : '')).toBe(upstreamPath);
  });
});

describe('escapes out of /public', () => {
  it.each([
    '/public/../admin/x',
    '/public/%2e%2e/admin/x',
    '/public/%2E%2e/admin/x',
    '/public/.%2e/admin/x',
    '/public/a/../../admin/x',
  ])('%s is routed as /admin/x (no route for this host), never sent to /public', async (target) => {
    const got = await send(target);
    expect(got.status).toBe(404);
    expect(got.body.code).toBe('no_route');
    expect(got.pub).toEqual([]);
    expect(got.adm).toEqual([]);
  });

  it('with the admin host, the same trick reaches the admin route with the same path', async () => {
    const got = await send('/public/%2e%2e/admin/x', 'admin.internal');
    expect(got.status).toBe(200);
    expect(got.adm).toEqual(['/admin/x']);
    expect(got.pub).toEqual([]);
  });

  it.each([
    ['/public/..%2fadmin/x', /encoded "\/"/],
    ['/public/..%2Fadmin/x', /encoded "\/"/],
    ['/public%2f..%2fadmin/x', /encoded "\/"/],
    ['/public/..%5cadmin/x', /encoded "\/" or "\\"/],
    ['/public/..%5Cadmin/x', /encoded "\/" or "\\"/],
    ['/public/..\\admin/x', /backslash/],
    ['/public\\..\\admin\\x', /backslash/],
    ['/public/%252e%252e%252fadmin/x', /double percent-encoding/],
    ['/public/%25%32%65%25%32%65/admin/x', /double percent-encoding/],
    ['/public/%2e%2e%00/admin/x', /control character/],
    ['/public/a%00.json', /control character/],
    ['/public/a%0d%0aX-Injected:%201', /control character/],
    ['/public/%c0%ae%c0%ae/admin/x', /invalid UTF-8/],
    ['/public/%c0%af..%c0%afadmin', /invalid UTF-8/],
    ['/public/..;/admin/x', /path parameters/],
    ['/public/..;jsessionid=x/admin/x', /path parameters/],
    ['/public/%2e%2e;/admin/x', /path parameters/],
    ['/public;x/../admin/x', /path parameters/],
    ['/public/..%3b/admin/x', /dot segment with an encoded ";"/],
    ['/public/a%zz', /invalid percent-encoding/],
    ['/../public/a', /escapes the root/],
    ['/public/../../admin', /escapes the root/],
    ['/public/a#fragment', /invalid character/],
    ['/public/a{b}?c#d', /invalid character/],
  ])('%s is refused with 400', async (target, reason) => {
    const got = await send(target);
    expect(got.status).toBe(400);
    expect(got.res.headers['content-type']).toBe('application/problem+json');
    expect(got.body.code).toBe('bad_request');
    expect(got.body.detail).toMatch(reason);
    expect(got.pub).toEqual([]);
    expect(got.adm).toEqual([]);
  });
});

describe('stripPrefix works on the normalised path', () => {
  it.each([
    ['/api/v1/../v2/x', '/v2/x'],
    ['/api/%2e/v2', '/v2'],
    ['//api//v2', '/v2'],
    ['/api', '/'],
  ])('%s → %s upstream', async (target, upstreamPath) => {
    const got = await send(target);
    expect(got.status).toBe(200);
    expect(got.pub).toEqual([upstreamPath]);
  });

  it('/api/../admin leaves the api route before the prefix is stripped', async () => {
    const got = await send('/api/%2e%2e/admin/x');
    expect(got.status).toBe(404);
    expect(got.pub).toEqual([]);
  });
});

describe('request targets that are not a path', () => {
  it.each([
    ['absolute-form', 'http://evil.example/public/a'],
    ['absolute-form to the gateway itself', 'http://gw.test/public/a'],
    ['asterisk-form', '*'],
  ])('%s is refused with 400, nothing upstream', async (_name, target) => {
    const got = await send(target);
    expect(got.status).toBe(400);
    expect(got.body.code).toBe('bad_request');
    expect(got.pub).toEqual([]);
    expect(got.adm).toEqual([]);
  });

  it('OPTIONS * is refused too', async () => {
    const { responses } = await exchange(
      gw.gateway.port,
      'OPTIONS * HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n',
    );
    expect(responses.map((r) => r.status)).toEqual([400]);
    expect(pub.requests).toEqual([]);
  });

  it('authority-form (CONNECT) gets a closed connection, nothing upstream', async () => {
    const { responses, closed } = await exchange(
      gw.gateway.port,
      'CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n',
    );
    expect(closed).toBe(true);
    expect(responses.every((r) => r.status >= 400 && r.status < 500)).toBe(true);
    expect(pub.requests).toEqual([]);
  });

  it.each([
    ['a control character', '/public/a\x01b'],
    ['a space', '/public/a b'],
    ['a raw non-ASCII byte', '/public/caf\xe9'],
    ['raw UTF-8', '/public/caf\xc3\xa9'],
    ['DEL', '/public/a\x7f'],
  ])('%s in the path: 400 and closed, nothing upstream', async (_name, target) => {
    const { responses, closed } = await exchange(
      gw.gateway.port,
      Buffer.from(`GET ${target} HTTP/1.1\r\nHost: gw.test\r\n\r\n`, 'latin1'),
    );
    expect(closed).toBe(true);
    expect(responses.map((r) => r.status)).toEqual([400]);
    expect(responses[0]?.headers['content-type']).toBe('application/problem+json');
    expect(pub.requests).toEqual([]);
  });
});

describe('oversized targets', () => {
  it('a URL over limits.maxUrlLength gets 414 problem+json, nothing upstream', async () => {
    const got = await send(`/public/${'a'.repeat(1100)}`);
    expect(got.status).toBe(414);
    expect(got.res.headers['content-type']).toBe('application/problem+json');
    expect(got.body.code).toBe('url_too_long');
    expect(got.pub).toEqual([]);
  });

  it('a URL just under the limit passes', async () => {
    const path = `/public/${'a'.repeat(1000)}`;
    const got = await send(path);
    expect(got.status).toBe(200);
    expect(got.pub).toEqual([path]);
  });

  it('the query counts towards the limit', async () => {
    const got = await send(`/public/a?${'q'.repeat(1100)}`);
    expect(got.status).toBe(414);
    expect(got.pub).toEqual([]);
  });
});
