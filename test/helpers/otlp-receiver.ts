/**
 * A minimal OTLP/HTTP trace receiver on 127.0.0.1:0: accepts `POST /v1/traces` in OTLP/JSON,
 * keeps every span flattened (ids, name, kind, attributes, resource), and can be told to answer
 * with an error status so a test can watch the exporter fail.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export type AttributeValue = string | number | boolean | null;

export type ReceivedSpan = {
  traceId: string;
  spanId: string;
  /** '' for a root span, as OTLP/JSON sends it */
  parentSpanId: string;
  traceState: string;
  name: string;
  /** OTLP SpanKind: 2 = SERVER */
  kind: number;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  /** OTLP StatusCode: 0 unset, 1 ok, 2 error */
  statusCode: number;
  attributes: Record<string, AttributeValue>;
  resource: Record<string, AttributeValue>;
};

export type OtlpReceiver = {
  /** the base URL to configure as `tracing.otlpUrl` */
  url: string;
  spans: ReceivedSpan[];
  /** POST /v1/traces requests received, whatever they were answered */
  requests: number;
  /** the status to answer with from now on (200 by default) */
  respondWith(status: number): void;
  /** resolves once `count` spans have arrived; rejects after `timeoutMs` */
  waitForSpans(count: number, timeoutMs?: number): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
};

type OtlpAnyValue = {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: number | string;
  doubleValue?: number;
};
type OtlpKeyValue = { key: string; value?: OtlpAnyValue };
type OtlpSpan = {
  traceId?: string;
  spanId?: string;
  parentSpanId?: string;
  traceState?: string;
  name?: string;
  kind?: number;
  startTimeUnixNano?: string | number;
  endTimeUnixNano?: string | number;
  attributes?: OtlpKeyValue[];
  status?: { code?: number };
};
type OtlpTraces = {
  resourceSpans?: Array<{
    resource?: { attributes?: OtlpKeyValue[] };
    scopeSpans?: Array<{ spans?: OtlpSpan[] }>;
  }>;
};

function valueOf(v: OtlpAnyValue | undefined): AttributeValue {
  if (v === undefined) return null;
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.boolValue !== undefined) return v.boolValue;
  // int64 travels as a string in OTLP/JSON
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  return null;
}

function attributesOf(list: OtlpKeyValue[] | undefined): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const kv of list ?? []) out[kv.key] = valueOf(kv.value);
  return out;
}

export function flattenTraces(body: OtlpTraces): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of body.resourceSpans ?? []) {
    const resource = attributesOf(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: s.traceId ?? '',
          spanId: s.spanId ?? '',
          parentSpanId: s.parentSpanId ?? '',
          traceState: s.traceState ?? '',
          name: s.name ?? '',
          kind: s.kind ?? 0,
          startTimeUnixNano: String(s.startTimeUnixNano ?? '0'),
          endTimeUnixNano: String(s.endTimeUnixNano ?? '0'),
          statusCode: s.status?.code ?? 0,
          attributes: attributesOf(s.attributes),
          resource,
        });
      }
    }
  }
  return out;
}

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  let status = 200;
  const waiters = new Set<() => void>();
  const receiver: OtlpReceiver = {
    url: '',
    spans: [],
    requests: 0,
    respondWith(s) {
      status = s;
    },
    waitForSpans(count, timeoutMs = 5000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          if (receiver.spans.length < count) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(receiver.spans);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`expected ${count} spans within ${timeoutMs} ms, got ${receiver.spans.length}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      receiver.requests++;
      if (!(req.headers['content-type'] ?? '').startsWith('application/json')) {
        res.writeHead(415).end();
        return;
      }
      if (status !== 200) {
        res.writeHead(status, { 'content-type': 'application/json' }).end('{}');
        return;
      }
      let body: OtlpTraces;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as OtlpTraces;
      } catch {
        res.writeHead(400).end();
        return;
      }
      receiver.spans.push(...flattenTraces(body));
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      for (const w of [...waiters]) w();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return receiver;
}
