/**
 * A small node:http client for tests that need what `fetch` hides or forbids: hop-by-hop request
 * headers, duplicate response headers, raw header lists, chunked uploads, per-request agents.
 */
import {
  request as httpRequest,
  type Agent,
  type IncomingMessage,
  type OutgoingHttpHeaders,
} from 'node:http';
import { Readable } from 'node:stream';
import { expect } from 'vitest';
import type { TestGateway } from './gateway.js';

export type Reply = {
  status: number;
  headers: IncomingMessage['headers'];
  rawHeaders: string[];
  body: Buffer;
  /** trailers after a chunked body (gRPC's grpc-status) */
  trailers: IncomingMessage['trailers'];
};

export type RequestOptions = {
  method?: string;
  headers?: OutgoingHttpHeaders;
  /** a Buffer/string is sent with Content-Length; a Readable is sent chunked */
  body?: Buffer | string | Readable;
  /** false (default): a fresh connection for this request */
  agent?: Agent | false;
};

/** One request; resolves with the whole response (rejects if the response is cut short). */
export function request(url: string, options: RequestOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, {
      method: options.method ?? 'GET',
      headers: options.headers ?? {},
      agent: options.agent ?? false,
    });
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        if (!res.complete) reject(new Error('response cut short'));
        else
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            rawHeaders: res.rawHeaders,
            body: Buffer.concat(chunks),
            trailers: res.trailers,
          });
      });
    });
    const body = options.body;
    if (body instanceof Readable) body.pipe(req);
    else req.end(body);
  });
}

export type Problem = {
  type: string;
  title: string;
  status: number;
  detail: string;
  instance: string;
  code: string;
};

/**
 * The problem `instance` for a request id (RFC 9457: a URI reference): `urn:uuid:<id>` for a
 * UUID, else the tag URI `tag:gatehouse.dev,2026:request:<id>`; spelt out here, not imported,
 * so that a test pins the format.
 */
export function instanceFor(requestId: string): string {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(requestId)
    ? `urn:uuid:${requestId}`
    : `tag:gatehouse.dev,2026:request:${requestId}`;
}

/** Asserts the reply is an RFC 9457 problem with `code`, whose `instance` names the request id. */
export function expectProblem(
  reply: { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer | string },
  status: number,
  code: string,
): Problem {
  expect(reply.status).toBe(status);
  expect(reply.headers['content-type']).toBe('application/problem+json');
  const p = JSON.parse(reply.body.toString()) as Problem;
  expect(p.code).toBe(code);
  expect(p.status).toBe(status);
  expect(typeof p.title).toBe('string');
  expect(typeof p.detail).toBe('string');
  expect(p.type).toContain(code);
  const id = reply.headers['x-request-id'];
  expect(typeof id).toBe('string');
  expect(p.instance).toBe(instanceFor(id as string));
  return p;
}

/** The gateway's data plane, as something whose open client connections can be counted. */
export function dataServer(gw: TestGateway): {
  getConnections(cb: (err: Error | null, n: number) => void): void;
} {
  return {
    getConnections: (cb) =>
      void gw.gateway.connectionCount().then(
        (n) => cb(null, n),
        (err: Error) => cb(err, 0),
      ),
  };
}

export function connectionCount(server: {
  getConnections(cb: (err: Error | null, n: number) => void): void;
}) {
  return new Promise<number>((resolve, reject) =>
    server.getConnections((err, n) => (err ? reject(err) : resolve(n))),
  );
}

/** Resolves when `emitter` emits `event` (first argument). */
export function once<T = unknown>(
  emitter: { once(event: string, fn: (arg: T) => void): unknown },
  event: string,
): Promise<T> {
  return new Promise((resolve) => emitter.once(event, resolve));
}

/** A deferred promise, for scripting upstreams from the test. */
export function deferred<T = void>(): { promise: Promise<T>; resolve(v: T): void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}
