/**
 * Observability's config: process logs, access logs and where they are shipped, tracing.
 */
import { Type, type StaticDecode } from '@sinclair/typebox';
import { Duration, HTTP_URL, Section, strict } from '../config/fields.js';

export const ElasticsearchSinkSchema = Type.Object(
  {
    url: Type.String({
      pattern: HTTP_URL,
      description: 'Elasticsearch base URL; records go to `<url>/_bulk`',
      errorMessage: 'must be an http(s) URL such as "http://127.0.0.1:9200"',
    }),
    index: Type.String({
      pattern: '^[a-z0-9][a-z0-9._-]*$',
      default: 'gatehouse-access',
      description: 'index (or data stream) the records are written to',
      errorMessage: 'must be a lower-case index name such as "gatehouse-access"',
    }),
    batchSize: Type.Integer({
      minimum: 1,
      default: 500,
      description: 'records per `_bulk` request, at most',
    }),
    flushInterval: Duration('1s', { min: '10ms', why: 'each flush can be a _bulk request' }),
    maxBuffer: Type.Integer({
      minimum: 1,
      default: 10000,
      description: 'records held while Elasticsearch is slow or down; when full the oldest are dropped',
    }),
    timeout: Duration('10s', { min: '1ms', why: 'a _bulk request must be given some time' }),
    maxBackoff: Duration('30s', {
      min: '100ms',
      why: 'it spaces the retries while Elasticsearch fails',
    }),
    apiKey: Type.Optional(
      Type.String({ description: 'sent as `Authorization: ApiKey <apiKey>`', secret: true }),
    ),
  },
  { ...strict, description: 'ship access-log records to Elasticsearch with the `_bulk` API' },
);

export const AccessLogSchema = Section(
  {
    stdout: Type.Boolean({ default: false, description: 'write access-log records to stdout as JSON lines' }),
    elasticsearch: Type.Optional(ElasticsearchSinkSchema),
  },
  'Access logs: one record per request, buffered off the request path and shipped in batches.',
);

export const LoggingSchema = Section(
  {
    level: Type.Union(
      ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)),
      { default: 'info', description: 'process log level (LOG_LEVEL env overrides)' },
    ),
    access: AccessLogSchema,
  },
  'Structured process logs (JSON lines on stdout) and access logs.',
);

export const TracingSchema = Type.Object(
  {
    otlpUrl: Type.Optional(
      Type.String({
        pattern: HTTP_URL,
        description: 'OTLP/HTTP collector base URL; spans go to `<otlpUrl>/v1/traces`. Absent = no export',
        errorMessage: 'must be an http(s) URL such as "http://127.0.0.1:4318"',
      }),
    ),
    sampleRate: Type.Number({
      minimum: 0,
      maximum: 1,
      default: 1,
      description: "share of new traces sampled (a continued trace keeps its caller's sampled flag)",
    }),
    serviceName: Type.String({ default: 'gatehouse', description: 'service.name of exported spans' }),
  },
  { ...strict, description: 'W3C trace context (always continued or started) and optional OTLP span export' },
);

export type LoggingConfig = StaticDecode<typeof LoggingSchema>;
export type AccessLogConfig = StaticDecode<typeof AccessLogSchema>;
export type ElasticsearchSinkConfig = StaticDecode<typeof ElasticsearchSinkSchema>;
export type TracingConfig = StaticDecode<typeof TracingSchema>;
