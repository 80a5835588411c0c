/**
 * Request smuggling against the real gateway, over raw sockets: every ambiguous framing is
 * refused (400 problem+json, connection closed) before anything reaches the upstream, and what
 * the gateway accepts reaches the upstream with framing the gateway chose.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import {
  exchange,
  noConnectionsLeft,
  framingProblems,
  RawClient,
  startRecordingUpstream,
  tapUpstream,
  type Recorded,
} from '../helpers/hostile.js';
import type { Upstream } from '../helpers/upstream.js';

let upstream: Upstream;
let requests: Recorded[];
let tap: ReturnType<typeof tapUpstream>;
let gw: TestGateway;
let port: number;

beforeAll(async () => {
  ({ upstream, requests } = await startRecordingUpstream());
  tap = tapUpstream(upstream);
  gw = await startGateway(`
limits: { keepAliveTimeout: 300ms, headersTimeout: 2s, requestTimeout: 3s }
services:
  echo: { targets: ["${upstream.url}"] }
routes:
  - { name: all, match: { path: /** }, service: echo }
`);
  port = gw.gateway.port;
});

afterAll(async () => {
  await gw.close();
  await upstream.close();
});

let before: number;
beforeEach(() => {
  before = requests.length;
});

afterEach(async () => {
  // no socket left behind by the case, and the gateway still serves
  await noConnectionsLeft(gw);
  const alive = await exchange(port, `GET /still-alive HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
  expect(alive.responses.map((r) => r.status)).toEqual([200]);
  await noConnectionsLeft(gw);
});

const H = 'Host: gw.test\r\n';

/** Sends a payload that must be refused: one 400 problem+json, the connection closed, nothing upstream. */
async function expectRefused(payload: string, detail?: RegExp): Promise<void> {
  const { responses, closed } = await exchange(port, Buffer.from(payload, 'latin1'));
  expect(closed).toBe(true);
  expect(responses).toHaveLength(1);
  const [res] = responses;
  expect(res?.status).toBe(400);
  expect(res?.headers['content-type']).toBe('application/problem+json');
  expect(res?.headers['connection']).toBe('close');
  const body = JSON.parse(res?.body ?? '') as { code: string; detail: string; instance: string };
  expect(body.code).toBe('bad_request');
  expect(body.instance).toBe(`urn:uuid:${res?.headers['x-request-id']}`);
  if (detail) expect(body.detail).toMatch(detail);
  expect(requests.length).toBe(before);
}

describe('ambiguous framing is refused before the upstream', () => {
  const refused: Array<[string, string]> = [
    [
      'Content-Length then Transfer-Encoding',
      `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n${H}\r\n`,
    ],
    [
      'Transfer-Encoding then Content-Length',
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n${H}\r\n`,
    ],
    [
      'Content-Length twice, different values',
      `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 30\r\n\r\nhelloGET /smuggled HTTP/1.1\r\n\r\n`,
    ],
    [
      'Content-Length twice, same value',
      `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello`,
    ],
    ['Content-Length list', `POST / HTTP/1.1\r\n${H}Content-Length: 5, 5\r\n\r\nhello`],
    ['Content-Length +5', `POST / HTTP/1.1\r\n${H}Content-Length: +5\r\n\r\nhello`],
    ['Content-Length 5a', `POST / HTTP/1.1\r\n${H}Content-Length: 5a\r\n\r\nhello`],
    ['Content-Length -5', `POST / HTTP/1.1\r\n${H}Content-Length: -5\r\n\r\nhello`],
    ['Content-Length 0x5', `POST / HTTP/1.1\r\n${H}Content-Length: 0x5\r\n\r\nhello`],
    ['Content-Length 5.0', `POST / HTTP/1.1\r\n${H}Content-Length: 5.0\r\n\r\nhello`],
    ['Content-Length empty', `POST / HTTP/1.1\r\n${H}Content-Length:\r\n\r\n`],
    ['Content-Length huge', `POST / HTTP/1.1\r\n${H}Content-Length: 99999999999999999999999999\r\n\r\nhello`],
    [
      'Transfer-Encoding: chunked, identity',
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n`,
    ],
    [
      'Transfer-Encoding: chunked, chunked',
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n`,
    ],
    ['Transfer-Encoding: xchunked', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`],
    [
      'Transfer-Encoding: chunked<TAB>',
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n`,
    ],
    [
      'Transfer-Encoding: <VT>chunked',
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n`,
    ],
    [
      'Transfer-Encoding with a space before the colon',
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n`,
    ],
    [
      'Transfer-Encoding twice',
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    ],
    [
      'Transfer-Encoding gzip then chunked, two headers',
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    ],
    [
      'Transfer-Encoding: gzip, chunked',
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`,
    ],
    ['Transfer-Encoding: gzip alone', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip\r\n\r\nhello`],
    ['Transfer-Encoding: identity', `POST / HTTP/1.1\r\n${H}Transfer-Encoding: identity\r\n\r\nhello`],
    [
      'obs-fold continuing Transfer-Encoding',
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: x\r\n chunked\r\n\r\n0\r\n\r\n`,
    ],
    ['obs-fold continuing Content-Length', `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\n 6\r\n\r\nhello!`],
    ['obs-fold on another header', `GET / HTTP/1.1\r\n${H}X-A: b\r\n\tTransfer-Encoding: chunked\r\n\r\n`],
    ['bare LF line endings', `GET / HTTP/1.1\nHost: gw.test\n\n`],
    [
      'a bare LF between headers',
      `GET / HTTP/1.1\r\nHost: gw.test\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
    ],
    ['a bare CR between headers', `GET / HTTP/1.1\r\nHost: gw.test\rX: y\r\n\r\n`],
    [
      'a bare LF in chunk framing',
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n`,
    ],
    [
      'a chunk size that overflows',
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nhello\r\n0\r\n\r\n`,
    ],
    [
      'a negative chunk size',
      `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n`,
    ],
    ['NUL in a header value', `GET / HTTP/1.1\r\n${H}X-A: a\x00b\r\n\r\n`],
    ['lower-case protocol name', `GET / http/1.1\r\n${H}\r\n`],
    ['unknown version', `GET / HTTP/1.2\r\n${H}\r\n`],
    ['unknown method', `GETX / HTTP/1.1\r\n${H}\r\n`],
  ];

  it.each(refused)('%s', async (_name, payload) => {
    await expectRefused(payload);
  });

  it('a chunk whose data overruns its size is cut, and the upstream never sees an end', async () => {
    // The headers are valid, so the upload has started when the parser meets the bad chunk:
    // the client gets a 400, the upstream an upload that never completes.
    const { responses, closed } = await exchange(
      port,
      `POST /overrun HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\nGET /smuggled HTTP/1.1\r\n${H}\r\n`,
    );
    expect(closed).toBe(true);
    expect(responses.map((r) => r.status)).toEqual([400]);
    expect(requests.slice(before).every((r) => r.url === '/overrun' && !r.complete)).toBe(true);
    expect(requests.some((r) => r.url === '/smuggled')).toBe(false);
  });
});

describe('what is accepted reaches the upstream as the gateway framed it', () => {
  it('a request hidden in a Content-Length body stays body', async () => {
    const hidden = `GET /admin HTTP/1.1\r\n${H}X-Evil: 1\r\n\r\n`;
    const client = await RawClient.open(port);
    client.write(`POST /upload HTTP/1.1\r\n${H}Content-Length: ${hidden.length}\r\n\r\n${hidden}`);
    const responses = await client.responses(1);
    client.destroy();
    expect(responses.map((r) => r.status)).toEqual([200]);
    const got = requests.slice(before);
    expect(got.map((r) => [r.method, r.url, r.body])).toEqual([['POST', '/upload', hidden]]);
    expect(framingProblems(got[0]?.rawHeaders ?? [])).toEqual([]);
  });

  it('a request hidden in a chunked body stays body, and the trailer is not forwarded', async () => {
    const hidden = `GET /admin HTTP/1.1\r\n${H}\r\n`;
    const client = await RawClient.open(port);
    client.write(
      `POST /upload HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n` +
        `${hidden.length.toString(16)}\r\n${hidden}\r\n0\r\nX-Evil: 1\r\n\r\n`,
    );
    const responses = await client.responses(1);
    client.destroy();
    expect(responses.map((r) => r.status)).toEqual([200]);
    const got = requests.slice(before);
    expect(got.map((r) => [r.method, r.url, r.body])).toEqual([['POST', '/upload', hidden]]);
    expect(got[0]?.rawTrailers).toEqual([]);
    expect(framingProblems(got[0]?.rawHeaders ?? [])).toEqual([]);
  });

  it('bytes after a Content-Length body are the next request, parsed by the gateway', async () => {
    const client = await RawClient.open(port);
    client.write(
      `POST /first HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhelloGET /second HTTP/1.1\r\n${H}\r\n` +
        `POST /third HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`,
    );
    const responses = await client.responses(3);
    client.destroy();
    expect(responses.map((r) => [r.status, (JSON.parse(r.body) as { url: string }).url])).toEqual([
      [200, '/first'],
      [200, '/second'],
      [200, '/third'],
    ]);
    const got = requests.slice(before);
    expect(got.map((r) => [r.method, r.url, r.body])).toEqual([
      ['POST', '/first', 'hello'],
      ['GET', '/second', ''],
      ['POST', '/third', 'abc'],
    ]);
    for (const r of got) expect(framingProblems(r.rawHeaders)).toEqual([]);
  });

  it.each([
    ['leading OWS', ' chunked'],
    ['trailing OWS', 'chunked '],
    ['upper case', 'Chunked'],
  ])('Transfer-Encoding with %s is plain chunked upstream', async (_name, value) => {
    const client = await RawClient.open(port);
    client.write(`POST /te HTTP/1.1\r\n${H}Transfer-Encoding:${value}\r\n\r\n5\r\nhello\r\n0\r\n\r\n`);
    const responses = await client.responses(1);
    client.destroy();
    expect(responses.map((r) => r.status)).toEqual([200]);
    const got = requests.slice(before);
    expect(got.map((r) => [r.url, r.body])).toEqual([['/te', 'hello']]);
    expect(framingProblems(got[0]?.rawHeaders ?? [])).toEqual([]);
  });

  it('Content-Length with leading zeros and OWS is sent as a plain number', async () => {
    const client = await RawClient.open(port);
    client.write(`POST /cl HTTP/1.1\r\n${H}Content-Length:  005 \r\n\r\nhello`);
    await client.responses(1);
    client.destroy();
    const got = requests.slice(before);
    expect(got.map((r) => [r.url, r.body])).toEqual([['/cl', 'hello']]);
    expect(framingProblems(got[0]?.rawHeaders ?? [])).toEqual([]);
    const i = got[0]?.rawHeaders.findIndex((h) => h.toLowerCase() === 'content-length') ?? -1;
    expect(got[0]?.rawHeaders[i + 1]).toBe('5');
  });

  it('`Connection: content-length` cannot take the framing header away', async () => {
    const client = await RawClient.open(port);
    client.write(`POST /conn HTTP/1.1\r\n${H}Connection: content-length\r\nContent-Length: 5\r\n\r\nhello`);
    await client.responses(1);
    client.destroy();
    const got = requests.slice(before);
    expect(got.map((r) => [r.url, r.body])).toEqual([['/conn', 'hello']]);
    const names = got[0]?.rawHeaders.filter((_v, i) => i % 2 === 0).map((n) => n.toLowerCase());
    expect(names).toContain('content-length');
    expect(names).not.toContain('transfer-encoding');
  });

  it('HTTP/1.0 with Transfer-Encoding is processed once, then the connection is closed', async () => {
    // RFC 9112 §6.1: treat the framing as faulty and close after the message.
    const { responses, closed } = await exchange(
      port,
      `POST /old HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.0\r\n${H}\r\n`,
    );
    expect(closed).toBe(true);
    expect(responses.map((r) => r.status)).toEqual([200]);
    const got = requests.slice(before);
    expect(got.map((r) => [r.url, r.body])).toEqual([['/old', 'hello']]);
    expect(framingProblems(got[0]?.rawHeaders ?? [])).toEqual([]);
  });

  it('garbage after a pipelined request: its answer first, then the 400, then the close', async () => {
    const { responses, closed } = await exchange(
      port,
      `GET /first HTTP/1.1\r\n${H}\r\nPOST /second HTTP/1.1\r\n${H}\r\nGET /third HTTP/1.1\r\n${H}Content-Length: 5a\r\n\r\n`,
    );
    expect(closed).toBe(true);
    expect(responses.map((r) => r.status)).toEqual([200, 200, 400]);
    expect(responses.slice(0, 2).map((r) => (JSON.parse(r.body) as { url: string }).url)).toEqual([
      '/first',
      '/second',
    ]);
    expect(requests.slice(before).map((r) => r.url)).toEqual(['/first', '/second']);
  });

  it('bytes after a request that closes the connection are ignored, not answered in its place', async () => {
    const { responses, closed } = await exchange(
      port,
      `GET /closing HTTP/1.1\r\n${H}Connection: close\r\n\r\nGET /smuggled HTTP/1.1\r\n${H}\r\n`,
    );
    expect(closed).toBe(true);
    expect(responses.map((r) => r.status)).toEqual([200]);
    expect(requests.slice(before).map((r) => r.url)).toEqual(['/closing']);
  });

  it('the upstream wire carries exactly the requests the gateway accepted', () => {
    // After every case above: each request the gateway sent (undici writes the request line,
    // then its own Host) is one the upstream recorded; nothing else starts a request there.
    const wire = tap.wire();
    const sent = wire.match(/[A-Z]+ \/\S* HTTP\/1\.1\r\nhost: 127\.0\.0\.1:\d+\r\n/g) ?? [];
    expect(sent.length).toBe(requests.length);
    expect(wire).not.toMatch(/\/smuggled/);
    expect(wire.toLowerCase()).not.toMatch(/transfer-encoding: (?!chunked\r\n)/);
  });
});
