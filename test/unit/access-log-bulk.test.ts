/** Reading `_bulk` answers, the NDJSON documents, and the index template the user doc shows. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  actionLine,
  bulkDocument,
  readBulkResponse,
} from '../../src/observability/access-log/elasticsearch-sink.js';
import {
  ACCESS_RECORD_MAPPINGS,
  indexTemplate,
  type AccessRecord,
} from '../../src/observability/access-log/record.js';

const sampleRecord: AccessRecord = {
  time: '2025-01-02T03:04:05.678Z',
  requestId: 'req-1',
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
  route: 'orders',
  method: 'GET',
  path: '/orders/42',
  status: 200,
  durationMs: 12.5,
  clientIp: '203.0.113.7',
  upstream: 'http://10.0.0.5:8080',
  upstreamDurationMs: 10.25,
  upstreamError: null,
  attempts: 1,
  consumerId: 'c-1',
  tier: 'gold',
  bytesIn: 0,
  bytesOut: 512,
  rateLimit: 'allowed',
  error: null,
};

const item = (status: number, error?: object): object => ({
  create: { status, ...(error ? { error } : {}) },
});

describe('readBulkResponse', () => {
  it('ships everything when errors is false', () => {
    expect(readBulkResponse(200, '{"errors":false,"items":[]}', 3)).toEqual({
      result: { ok: true },
      rejected: 0,
      firstRejection: null,
    });
  });

  it('sorts items: 2xx shipped, 429 and 5xx retried, other 4xx rejected, missing retried', () => {
    const body = JSON.stringify({
      errors: true,
      items: [
        item(201),
        item(429, { type: 'es_rejected_execution_exception' }),
        item(400, { type: 'mapper_parsing_exception', reason: 'failed to parse field [status]' }),
        item(503),
        item(409, { type: 'version_conflict_engine_exception' }),
        { create: {} },
      ],
    });
    const reading = readBulkResponse(200, body, 7);
    expect(reading.result).toEqual({
      ok: true,
      items: ['shipped', 'retry', 'rejected', 'retry', 'rejected', 'retry', 'retry'],
    });
    expect(reading.rejected).toBe(2);
    expect(reading.firstRejection).toBe('mapper_parsing_exception: failed to parse field [status]');
  });

  it('shortens the reason Elasticsearch gives (it quotes field values)', () => {
    const body = JSON.stringify({
      errors: true,
      items: [item(400, { type: 't', reason: 'x'.repeat(5000) })],
    });
    expect(readBulkResponse(200, body, 1).firstRejection).toHaveLength(3 + 200);
  });

  it('retries a whole request answered 429, 408 or 5xx without charging the records', () => {
    for (const status of [429, 408, 500, 502, 503]) {
      expect(readBulkResponse(status, '{"error":{"type":"x"}}', 2).result).toEqual({
        ok: false,
        error: `HTTP ${status} (x)`,
        charge: false,
      });
    }
  });

  it('charges the records of a request refused with another status', () => {
    for (const status of [400, 401, 403, 404, 413, 301]) {
      expect(readBulkResponse(status, 'not json', 2).result).toEqual({
        ok: false,
        error: `HTTP ${status}`,
        charge: true,
      });
    }
  });

  it('treats an unreadable 200 as a failure of the sink', () => {
    for (const body of ['', '<html>', '[]', 'null']) {
      expect(readBulkResponse(200, body, 1).result).toMatchObject({ ok: false, charge: false });
    }
  });
});

describe('bulk lines', () => {
  it('writes a create action and the record with @timestamp first', () => {
    expect(actionLine('gatehouse-access')).toBe('{"create":{"_index":"gatehouse-access"}}\n');
    const doc = bulkDocument(sampleRecord);
    expect(doc).not.toContain('\n');
    expect(doc.startsWith('{"@timestamp":"2025-01-02T03:04:05.678Z","time":')).toBe(true);
    expect(JSON.parse(doc)).toEqual({ '@timestamp': sampleRecord.time, ...sampleRecord });
  });
});

describe('index template', () => {
  it('maps exactly the record fields and @timestamp', () => {
    expect(Object.keys(ACCESS_RECORD_MAPPINGS.properties).sort()).toEqual(
      ['@timestamp', ...Object.keys(sampleRecord)].sort(),
    );
  });

  it('is the one docs/access-logs.md shows', () => {
    const doc = readFileSync(new URL('../../docs/access-logs.md', import.meta.url), 'utf8');
    const block = /PUT _index_template\/gatehouse-access\n(\{[\s\S]*?\n\})\n```/.exec(doc)?.[1];
    expect(block).toBeDefined();
    expect(JSON.parse(block ?? '')).toEqual(indexTemplate('gatehouse-access'));
  });
});
