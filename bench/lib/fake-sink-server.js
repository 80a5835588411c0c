#!/usr/bin/env node
// A fake collector for the benchmarks, run as its own process so that the runner can pin it away
// from the gateway: an Elasticsearch `_bulk` endpoint or an OTLP/HTTP trace receiver. It counts
// what it receives and answers at once, as a healthy collector would; it stores nothing, so its
// own cost stays small and constant. Started by lib/fake-sinks.js.
//
//   node fake-sink-server.js --kind elasticsearch|otlp --port <port>
//
// elasticsearch: POST /_bulk (any query) with an NDJSON body (action line + document per record)
//   -> 200 {"errors":false,"items":[{"create":{"status":201}}, ...]}, one item per document.
// otlp: POST /v1/traces with an OTLP/JSON body -> 200 {"partialSuccess":{}}; spans are counted by
//   their "spanId" keys (cheaper than parsing, exact for spans without links).
// both: GET /stats -> {"requests":n,"items":n,"bytes":n,"bad":n}; items = documents or spans.
import http from 'node:http';
import { parseArgs } from 'node:util';

const NEWLINE = 0x0a;
const SPAN_ID_KEY = Buffer.from('"spanId"');

/** @type {Map<number, string>} */
const bulkAnswers = new Map();

/**
 * What Elasticsearch answers (with the gateway's filter_path) when it indexed every document.
 * Batches have few distinct sizes, so the strings are kept.
 * @param {number} count
 */
function bulkAnswer(count) {
  let answer = bulkAnswers.get(count);
  if (answer === undefined) {
    answer = `{"errors":false,"items":[${Array(count).fill('{"create":{"status":201}}').join(',')}]}`;
    if (bulkAnswers.size < 10_000) bulkAnswers.set(count, answer);
  }
  return answer;
}

/**
 * @param {Buffer} buf
 * @param {Buffer | number} needle
 */
function countOf(buf, needle) {
  let n = 0;
  const step = typeof needle === 'number' ? 1 : needle.length;
  for (let i = buf.indexOf(needle); i !== -1; i = buf.indexOf(needle, i + step)) n++;
  return n;
}

/**
 * @param {import('node:http').IncomingMessage} req
 * @returns {Promise<Buffer>}
 */
function readBody(req) {
  return new Promise((resolve, reject) => {
    /** @type {Buffer[]} */
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function main() {
  const { values } = parseArgs({ options: { kind: { type: 'string' }, port: { type: 'string' } } });
  const kind = values.kind;
  const port = Number(values.port);
  if ((kind !== 'elasticsearch' && kind !== 'otlp') || !Number.isInteger(port) || port <= 0) {
    console.error('usage: node fake-sink-server.js --kind elasticsearch|otlp --port <port>');
    process.exit(2);
  }
  const stats = { requests: 0, items: 0, bytes: 0, bad: 0 };
  const send = (
    /** @type {import('node:http').ServerResponse} */ res,
    /** @type {number} */ status,
    /** @type {string} */ body,
  ) => {
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  };

  const server = http.createServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/stats') return send(res, 200, JSON.stringify(stats));
    const body = await readBody(req).catch(() => null);
    if (body === null) return;
    if (req.method !== 'POST') return send(res, 405, '{"error":"method not allowed"}');
    if (kind === 'elasticsearch' && path === '/_bulk') {
      stats.requests++;
      stats.bytes += body.length;
      const lines = countOf(body, NEWLINE);
      // Elasticsearch refuses a body that does not end with a newline or lacks a document line
      if (lines % 2 !== 0 || body[body.length - 1] !== NEWLINE) {
        stats.bad++;
        return send(
          res,
          400,
          '{"error":{"type":"parse_exception","reason":"malformed bulk body"},"status":400}',
        );
      }
      stats.items += lines / 2;
      return send(res, 200, bulkAnswer(lines / 2));
    }
    if (kind === 'otlp' && path === '/v1/traces') {
      stats.requests++;
      stats.bytes += body.length;
      if (!String(req.headers['content-type']).startsWith('application/json')) stats.bad++;
      stats.items += countOf(body, SPAN_ID_KEY);
      return send(res, 200, '{"partialSuccess":{}}');
    }
    return send(res, 404, '{"error":"not found"}');
  });
  server.keepAliveTimeout = 60_000;
  server.listen(port, '127.0.0.1');
  for (const signal of /** @type {const} */ (['SIGTERM', 'SIGINT'])) {
    process.on(signal, () => {
      server.close();
      server.closeAllConnections();
    });
  }
}

main();
