/**
 * A fake Elasticsearch `_bulk` endpoint on 127.0.0.1:0 (no Elasticsearch can be installed where
 * the tests run). It parses NDJSON like the real one (a `create`/`index` action line, then the
 * document; the body must end with a newline), stores what it indexes, and is scripted per
 * request: index everything, fail chosen items, answer the whole request with a status, stall,
 * or be down (listener closed: connection refused).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type Doc = Record<string, unknown>;

export type ItemFailure = { status: number; type: string; reason: string };

export type Behaviour =
  | { kind: 'ok' }
  /** items for which `fail` returns a failure get it; the others are indexed */
  | { kind: 'items'; fail: (doc: Doc, position: number) => ItemFailure | null }
  /** the whole request answered with `status` (429, 500, 401, ...); nothing indexed */
  | { kind: 'status'; status: number }
  /** the request is read and never answered */
  | { kind: 'stall' };

export type BulkRequest = {
  path: string;
  headers: IncomingMessage['headers'];
  docs: Doc[];
  answer: Behaviour['kind'] | 'bad_request';
};

export type FakeElasticsearch = {
  url: string;
  port: number;
  /** indexed documents, in order */
  docs: Array<{ index: string; doc: Doc }>;
  /** every `_bulk` request received, with its parsed documents and how it was answered */
  requests: BulkRequest[];
  /** behaviours for the next requests, one each, before `otherwise` applies again */
  script(...next: Behaviour[]): void;
  /** the behaviour once the script is used up (initially `ok`) */
  otherwise(behaviour: Behaviour | ((request: BulkRequest) => Behaviour)): void;
  /** stops listening and cuts every connection: clients get ECONNREFUSED until `up()` */
  down(): Promise<void>;
  up(): Promise<void>;
  close(): Promise<void>;
};

export const TOO_MANY: ItemFailure = {
  status: 429,
  type: 'es_rejected_execution_exception',
  reason: 'rejected execution of coordinating operation',
};

export const MAPPER_PARSING: ItemFailure = {
  status: 400,
  type: 'mapper_parsing_exception',
  reason: "failed to parse field [status] of type [short] in document. Preview of field's value: 'x'",
};

/** Fails every `n`th item of a request (positions n-1, 2n-1, ...) with `failure`. */
export const everyNth =
  (n: number, failure: ItemFailure): Extract<Behaviour, { kind: 'items' }>['fail'] =>
  (_doc, position) =>
    (position + 1) % n === 0 ? failure : null;

export async function startFakeElasticsearch(): Promise<FakeElasticsearch> {
  const docs: FakeElasticsearch['docs'] = [];
  const requests: BulkRequest[] = [];
  const queue: Behaviour[] = [];
  let fallback: Behaviour | ((request: BulkRequest) => Behaviour) = { kind: 'ok' };
  let nextId = 0;
  const sockets = new Set<Socket>();

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handle(req, res, Buffer.concat(chunks).toString('utf8')));
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  function handle(req: IncomingMessage, res: ServerResponse, body: string): void {
    const path = req.url ?? '';
    const request: BulkRequest = { path, headers: req.headers, docs: [], answer: 'bad_request' };
    requests.push(request);
    const parsed = parseBulk(req, body);
    if (typeof parsed === 'string') return json(res, 400, esError('illegal_argument_exception', parsed, 400));
    request.docs = parsed.map((p) => p.doc);
    const behaviour = queue.shift() ?? (typeof fallback === 'function' ? fallback(request) : fallback);
    request.answer = behaviour.kind;
    if (behaviour.kind === 'stall') return;
    if (behaviour.kind === 'status')
      return json(res, behaviour.status, esError('scripted_failure', 'scripted', behaviour.status));
    let errors = false;
    const items = parsed.map(({ index, doc }, position) => {
      const failed = behaviour.kind === 'items' ? behaviour.fail(doc, position) : null;
      if (failed !== null) {
        errors = true;
        return {
          create: {
            _index: index,
            status: failed.status,
            error: { type: failed.type, reason: failed.reason },
          },
        };
      }
      const id = `doc-${nextId++}`;
      docs.push({ index, doc });
      return { create: { _index: index, _id: id, _version: 1, result: 'created', status: 201 } };
    });
    json(res, 200, { took: 1, errors, items });
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const stop = (): Promise<void> =>
    new Promise((resolve) => {
      if (!server.listening) return resolve();
      server.close(() => resolve());
      for (const socket of sockets) socket.destroy();
    });

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    docs,
    requests,
    script: (...next) => void queue.push(...next),
    otherwise: (behaviour) => void (fallback = behaviour),
    down: stop,
    up: () => new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve)),
    close: stop,
  };
}

/** The documents of a `_bulk` body, or why Elasticsearch would refuse it. */
function parseBulk(req: IncomingMessage, body: string): Array<{ index: string; doc: Doc }> | string {
  if (req.method !== 'POST') return `method ${req.method ?? ''} not allowed`;
  if (!(req.url ?? '').startsWith('/_bulk')) return `no handler for ${req.url ?? ''}`;
  if (req.headers['content-type'] !== 'application/x-ndjson')
    return 'content-type must be application/x-ndjson';
  if (!body.endsWith('\n')) return 'The bulk request must be terminated by a newline [\\n]';
  const lines = body.slice(0, -1).split('\n');
  if (lines.length % 2 !== 0) return 'action line without a document';
  const out: Array<{ index: string; doc: Doc }> = [];
  for (let i = 0; i < lines.length; i += 2) {
    let action: unknown;
    let doc: unknown;
    try {
      action = JSON.parse(lines[i] ?? '');
      doc = JSON.parse(lines[i + 1] ?? '');
    } catch {
      return `malformed line ${i + 1}`;
    }
    const target = (action as { create?: { _index?: unknown } } | null)?.create?._index;
    if (typeof target !== 'string') return `line ${i + 1}: expected {"create":{"_index":...}}`;
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return `line ${i + 2}: not an object`;
    out.push({ index: target, doc: doc as Doc });
  }
  return out;
}

function esError(type: string, reason: string, status: number): object {
  return { error: { root_cause: [{ type, reason }], type, reason }, status };
}

function json(res: ServerResponse, status: number, value: object): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
