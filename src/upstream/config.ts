/**
 * The upstream services' config: where a service's targets come from (static or DNS), how a
 * target is picked, timeouts and pools, health (active and passive), the circuit breaker and
 * retries; and the checks within a service.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Type, type StaticDecode } from '@sinclair/typebox';
import {
  Duration,
  Section,
  Size,
  strict,
  type ConfigCheck,
  type ConfigParts,
  type PathSegment,
  type Report,
} from '../config/fields.js';

const TargetUrl = Type.String({
  pattern: '^https?://[^/?#\\s]+/?$',
  description: 'an upstream origin: http://host:port (no path)',
  errorMessage: 'must be an upstream origin such as "http://10.0.0.5:8080" (http or https, no path)',
});

const DNS_NAME =
  '^_?[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?(\\._?[A-Za-z0-9]([A-Za-z0-9_-]*[A-Za-z0-9])?)*\\.?$';

export const DiscoverySchema = Type.Object(
  {
    dns: Type.String({
      pattern: DNS_NAME,
      description:
        'a DNS name: its A/AAAA records (e.g. a headless Kubernetes Service) are the targets; a name starting with "_" is an SRV lookup (e.g. _http._tcp.orders.shop.svc.cluster.local), whose records give host and port',
      errorMessage:
        'must be a DNS name such as "orders.shop.svc.cluster.local", or an SRV name such as "_http._tcp.orders.shop.svc.cluster.local"',
    }),
    port: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 65535,
        description: "the targets' port for A/AAAA lookups (required there); SRV records carry their own",
        errorMessage: 'must be a port number from 1 to 65535',
      }),
    ),
    refresh: Duration('10s', { min: '100ms', why: 'each refresh is a DNS lookup' }),
    scheme: Type.Union([Type.Literal('http'), Type.Literal('https')], {
      default: 'http',
      description: 'scheme of the discovered targets',
    }),
  },
  {
    ...strict,
    description: 'targets found in DNS, re-resolved every `refresh` (sooner when a TTL is shorter)',
  },
);

export const HealthCheckSchema = Type.Object(
  {
    path: Type.String({
      pattern: '^/',
      default: '/health',
      description: 'path of the GET request sent to every target',
      errorMessage: 'must be a path starting with "/", such as "/health"',
    }),
    interval: Duration('5s', { min: '100ms', why: 'each check is a request to every target' }),
    timeout: Duration('1s', { min: '1ms', why: 'at 0 a check would have no timeout' }),
    healthyAfter: Type.Integer({
      minimum: 1,
      default: 2,
      description: 'consecutive passing checks that make an unhealthy target healthy',
    }),
    unhealthyAfter: Type.Integer({
      minimum: 1,
      default: 3,
      description: 'consecutive failing checks that make a healthy target unhealthy',
    }),
  },
  { ...strict, description: 'active health checks: a GET to every target each `interval`; 2xx/3xx passes' },
);

export const PassiveHealthSchema = Section(
  {
    consecutiveErrors: Type.Integer({
      minimum: 0,
      default: 5,
      description:
        'consecutive connection errors, timeouts or 5xx answers that eject a target from balancing; 0 = off',
    }),
    ejectFor: Duration('10s', { min: '1ms', why: 'a target ejected for 0 is not ejected' }),
    maxEjectFor: Duration('5m', { min: '1ms' }),
    maxEjectedPercent: Type.Integer({
      minimum: 0,
      maximum: 100,
      default: 50,
      description: "at most this share of a service's targets is ejected at once",
    }),
  },
  'passive health: a target failing `consecutiveErrors` times in a row is ejected for `ejectFor`, doubling with each ejection in a row up to `maxEjectFor`',
);

export const CircuitBreakerSchema = Section(
  {
    enabled: Type.Boolean({ default: true, description: 'false = no breaker for this service' }),
    errorRate: Type.Number({
      exclusiveMinimum: 0,
      maximum: 1,
      default: 0.5,
      description: 'share of failed requests in `window` that opens the breaker',
    }),
    window: Duration('10s', { min: '100ms', why: 'the error rate is measured over this window' }),
    minRequests: Type.Integer({
      minimum: 1,
      default: 20,
      description: 'requests the window must hold before the breaker may open',
    }),
    openFor: Duration('30s', { min: '1ms', why: 'a breaker open for 0 stops nothing' }),
    probes: Type.Integer({
      minimum: 1,
      default: 3,
      description: 'requests let through while half-open; all must succeed to close the breaker',
    }),
  },
  'circuit breaker: while open, requests fail fast with 503 circuit_open',
);

export const RetryOn = Type.Union(
  [
    Type.Literal('connect-error'),
    Type.Literal('timeout'),
    Type.Literal('reset'),
    Type.Integer({ minimum: 500, maximum: 599 }),
  ],
  {
    errorMessage: 'must be "connect-error", "timeout", "reset" or a 5xx status code such as 503',
  },
);

export const RetrySchema = Section(
  {
    attempts: Type.Integer({
      minimum: 1,
      maximum: 10,
      default: 3,
      description: 'attempts in all, the first included; 1 = no retries',
    }),
    backoff: Duration('50ms', { zero: 'retry at once' }),
    maxBackoff: Duration('1s', { zero: 'retry at once (backoff must be 0 too)' }),
    on: Type.Array(RetryOn, {
      default: ['connect-error', 'reset', 502, 503, 504],
      uniqueItems: true,
      description:
        'what is retried: connect-error (refused, unreachable, connect timeout: the request never reached the target), reset (the connection broke or the response was invalid before any of it reached the client), timeout (no response headers in time), and 5xx statuses',
    }),
    maxRetryAfter: Duration('2s', {
      zero: 'a status whose Retry-After asks for any wait is not retried',
    }),
    budget: Type.Number({
      minimum: 0,
      maximum: 1,
      default: 0.2,
      description: "retries are at most this share of the service's requests (over the last 10 s)",
    }),
    minRetries: Type.Integer({
      minimum: 0,
      default: 10,
      description: 'retries allowed in any 10 s whatever the budget, so a quiet service can still retry',
    }),
    deadline: Duration('30s', { min: '1ms', why: 'it bounds the whole request, retries included' }),
  },
  'retries of idempotent requests (GET, HEAD, OPTIONS, PUT, DELETE, or with Idempotency-Key) on another target',
);

export const DnsSchema = Type.Object(
  {
    servers: Type.Array(
      Type.String({
        pattern:
          '^(\\d{1,3}(\\.\\d{1,3}){3}(:\\d{1,5})?|\\[[0-9A-Fa-f:.]+\\](:\\d{1,5})?|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)$',
        errorMessage: 'must be a DNS server address such as "10.96.0.10", "127.0.0.1:5353" or "[::1]:53"',
      }),
      {
        minItems: 1,
        description: "DNS servers for `discovery` lookups (ip or ip:port); default: the system's",
      },
    ),
    timeout: Duration('2s', { min: '1ms', why: 'a lookup must be given some time' }),
  },
  { ...strict, description: 'the resolver `discovery` uses' },
);

const PemFile = (description: string) =>
  Type.String({
    minLength: 1,
    description,
    errorMessage: 'must be the path of a PEM file, such as "/etc/gatehouse/upstream-ca.pem"',
  });

export const UpstreamTlsSchema = Type.Object(
  {
    ca: Type.Optional(
      PemFile(
        "CA certificates (PEM bundle) that the targets' certificates must chain to, instead of the system's; default: the system CAs",
      ),
    ),
    cert: Type.Optional(PemFile('client certificate (PEM) presented to the targets (mTLS); needs `key`')),
    key: Type.Optional(PemFile('private key (PEM) of the client certificate; needs `cert`')),
    serverName: Type.Optional(
      Type.String({
        pattern: DNS_NAME,
        description:
          "the name sent as SNI and verified in the targets' certificates; default: each target's host name",
        errorMessage: 'must be a DNS name such as "orders.internal"',
      }),
    ),
    verify: Type.Boolean({
      default: true,
      description:
        "false = the targets' certificates are not verified (encryption without authentication: logged at warn, shown in GET /services)",
    }),
  },
  {
    ...strict,
    description: 'TLS to the `https://` targets: CA bundle, client certificate, SNI, verification',
  },
);

export const ServiceSchema = Type.Object(
  {
    targets: Type.Optional(
      Type.Array(TargetUrl, { minItems: 1, description: 'static upstream origins (or use `discovery`)' }),
    ),
    discovery: Type.Optional(DiscoverySchema),
    balancer: Type.Union(
      [Type.Literal('round-robin'), Type.Literal('least-request'), Type.Literal('random')],
      {
        default: 'round-robin',
        description:
          'how a target is picked among the healthy ones: round-robin, least-request (the less busy of two picked at random), random',
      },
    ),
    timeouts: Section(
      {
        connect: Duration('2s', { min: '1ms', why: 'at 0 a connection attempt would have no timeout' }),
        response: Duration('15s', { min: '1ms', why: 'at 0 a response would have no timeout' }),
      },
      'connect: TCP connect to a target; response: until the response headers arrive, and the longest pause between body chunks',
    ),
    pool: Section(
      {
        connections: Type.Integer({ minimum: 1, default: 128, description: 'max connections per target' }),
        keepAlive: Duration('60s', {
          min: '1ms',
          why: 'at 0 idle connections to the target would never be closed',
        }),
      },
      'keep-alive connection pool per target',
    ),
    protocol: Type.Union([Type.Literal('http1'), Type.Literal('h2'), Type.Literal('h2c')], {
      default: 'http1',
      description:
        'how the gateway talks to the targets: http1 (HTTP/1.1), h2 (HTTP/2 over TLS, negotiated by ALPN: `https://` targets; a target that only speaks HTTP/1.1 still works), h2c (HTTP/2 in cleartext with prior knowledge: `http://` targets; needed by gRPC services without TLS)',
    }),
    tls: Type.Optional(UpstreamTlsSchema),
    healthCheck: Type.Optional(HealthCheckSchema),
    passiveHealth: PassiveHealthSchema,
    circuitBreaker: CircuitBreakerSchema,
    retry: RetrySchema,
  },
  { ...strict, description: 'an upstream service: `targets` or `discovery`' },
);

export const SERVICE_NAME = '^[A-Za-z0-9][A-Za-z0-9_.-]*$';
export const SERVICE_NAME_MESSAGE =
  'is not a valid service name: use letters, digits, "_", "." and "-", starting with a letter or digit';

// additionalProperties: false, or a service whose name fails the pattern would be ignored
// (neither validated nor rejected) while routes could still name it.
export const ServicesSchema = Type.Record(Type.String({ pattern: SERVICE_NAME }), ServiceSchema, {
  default: {},
  additionalProperties: false,
  propertyNames: {
    pattern: SERVICE_NAME,
    errorMessage: SERVICE_NAME_MESSAGE,
  },
  description: 'upstream services, by name',
});

export type ServiceConfig = StaticDecode<typeof ServiceSchema>;
export type DnsConfig = StaticDecode<typeof DnsSchema>;
export type DiscoveryConfig = StaticDecode<typeof DiscoverySchema>;
export type HealthCheckConfig = StaticDecode<typeof HealthCheckSchema>;
export type PassiveHealthConfig = StaticDecode<typeof PassiveHealthSchema>;
export type CircuitBreakerConfig = StaticDecode<typeof CircuitBreakerSchema>;
export type RetryConfig = StaticDecode<typeof RetrySchema>;
export type UpstreamTlsConfig = StaticDecode<typeof UpstreamTlsSchema>;

/** Each target a URL Node can connect to; each service that satisfied its schema, consistent. */
export const checkServices: ConfigCheck = (config, report) => {
  const names = config.keys('services') ?? [];
  for (const name of names) {
    for (let i = 0; i < config.length('services', name, 'targets'); i++) {
      const target = config.valid(TargetUrl, 'services', name, 'targets', i);
      const reason = target === undefined ? null : targetProblem(target);
      if (reason) report(['services', name, 'targets', i], reason);
    }
  }
  for (const name of names) {
    const service = config.valid(ServiceSchema, 'services', name);
    if (service) checkService(service, (path, message) => report(['services', name, ...path], message));
  }
};

/** A target passed the schema's pattern; it must also be a URL Node can connect to. */
function targetProblem(target: string): string | null {
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    return `must be a valid URL such as "http://10.0.0.5:8080"; "${target}" is not`;
  }
  if (url.hostname === '') return `must name a host, such as "http://10.0.0.5:8080"; "${target}" does not`;
  if (url.username !== '' || url.password !== '') {
    return `must not contain credentials ("user@"): they would not be sent upstream`;
  }
  return null;
}

/** Checks within one service: where its targets come from, and settings that contradict. */
function checkService(service: ServiceConfig, report: Report): void {
  const { targets, discovery, retry, healthCheck, passiveHealth } = service;
  if (targets === undefined && discovery === undefined) {
    report(['targets'], 'is required: list the targets, or find them with `discovery`');
  }
  if (targets !== undefined && discovery !== undefined) {
    report(['discovery'], 'cannot be used together with `targets`: choose one');
  }
  if (discovery !== undefined) {
    const srv = discovery.dns.startsWith('_');
    if (!srv && discovery.port === undefined) {
      report(['discovery', 'port'], `is required for an A/AAAA lookup of "${discovery.dns}"`);
    }
    if (srv && discovery.port !== undefined) {
      report(
        ['discovery', 'port'],
        `must not be set for an SRV lookup ("${discovery.dns}"): the records carry the port`,
      );
    }
  }
  checkProtocol(service, report);
  if (retry.backoff > retry.maxBackoff) {
    report(['retry', 'backoff'], `must not be longer than retry.maxBackoff (${retry.maxBackoff} ms)`);
  }
  if (healthCheck !== undefined && healthCheck.timeout >= healthCheck.interval) {
    // the next check is due `interval` after one ends: a hung target is checked every
    // timeout + interval, which stays under twice the interval only this way
    report(
      ['healthCheck', 'timeout'],
      `must be shorter than healthCheck.interval (${healthCheck.interval} ms)`,
    );
  }
  if (passiveHealth.ejectFor > passiveHealth.maxEjectFor) {
    report(
      ['passiveHealth', 'ejectFor'],
      `must not be longer than passiveHealth.maxEjectFor (${passiveHealth.maxEjectFor} ms)`,
    );
  }
}

// --- a route's own upstream limits: `limits.bodySize`, `timeouts.response` and `retry`, each in
// place of the gateway's or the service's for that route only. No field has a default: what a
// route leaves out stays the gateway's or the service's. Compiled once per route at load
// (route-policy.ts), never looked up per request.

export const RouteLimits = Type.Object(
  {
    bodySize: Type.Optional(Size()),
  },
  {
    ...strict,
    description:
      "this route's request limits in place of the gateway's `limits`: bodySize (a larger upload route, a smaller JSON API)",
  },
);

export const RouteTimeouts = Type.Object(
  {
    response: Type.Optional(
      Duration(undefined, { min: '1ms', why: 'at 0 a response would have no timeout' }),
    ),
  },
  {
    ...strict,
    description:
      "this route's upstream timeouts in place of its service's: response (until the response headers arrive, and the longest pause between body chunks)",
  },
);

export const RouteRetry = Type.Object(
  {
    attempts: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 10,
        description: 'attempts in all, the first included; 1 = no retries',
      }),
    ),
    backoff: Type.Optional(Duration(undefined, { zero: 'retry at once' })),
    maxBackoff: Type.Optional(Duration(undefined, { zero: 'retry at once (backoff must be 0 too)' })),
    on: Type.Optional(
      Type.Array(RetryOn, {
        uniqueItems: true,
        description:
          "what is retried: connect-error, reset, timeout and 5xx statuses (as a service's retry.on)",
      }),
    ),
    maxRetryAfter: Type.Optional(
      Duration(undefined, { zero: 'a status whose Retry-After asks for any wait is not retried' }),
    ),
    deadline: Type.Optional(
      Duration(undefined, { min: '1ms', why: 'it bounds the whole request, retries included' }),
    ),
  },
  {
    ...strict,
    description:
      "this route's retry rules in place of its service's (the fields given; the rest stay the service's). The retry budget stays the service's: budget and minRetries cannot be set per route",
  },
);

export type RouteRetryConfig = StaticDecode<typeof RouteRetry>;

const RetryDurations = Type.Object({ backoff: Duration(), maxBackoff: Duration() });

/**
 * The route's retry, merged over each service it reaches, keeps backoff ≤ maxBackoff (the
 * services' own sections are checked beside them).
 */
export const checkRoutePolicy: ConfigCheck = (config, report) => {
  const count = config.length('routes');
  for (let i = 0; i < count; i++) {
    const route = (...rest: PathSegment[]) => ['routes', i, ...rest];
    const retry = config.valid(RouteRetry, ...route('retry'));
    if (retry === undefined || (retry.backoff === undefined && retry.maxBackoff === undefined)) continue;
    const names = new Set<string>();
    const service = config.valid(Type.String(), ...route('service'));
    if (service !== undefined) names.add(service);
    const split = config.valid(Type.Array(Type.Object({ name: Type.String() })), ...route('services'));
    for (const s of split ?? []) names.add(s.name);
    const canary = config.valid(Type.Array(Type.Object({ service: Type.String() })), ...route('canary'));
    for (const c of canary ?? []) names.add(c.service);
    for (const name of names) {
      const own = config.valid(RetryDurations, 'services', name, 'retry');
      if (own === undefined) continue;
      const backoff = retry.backoff ?? own.backoff;
      const maxBackoff = retry.maxBackoff ?? own.maxBackoff;
      if (backoff > maxBackoff) {
        report(
          route('retry', retry.backoff !== undefined ? 'backoff' : 'maxBackoff'),
          `backoff (${backoff} ms) must not be longer than maxBackoff (${maxBackoff} ms) over service "${name}"`,
        );
        break;
      }
    }
  }
};

/** The schemes of a service's targets: the static ones, or discovery's. */
function schemesOf(service: ServiceConfig): Set<string> {
  if (service.discovery !== undefined) return new Set([service.discovery.scheme]);
  return new Set((service.targets ?? []).map((t) => t.slice(0, t.indexOf(':'))));
}

/** `tls` and `protocol` against the targets' schemes. */
function checkProtocol(service: ServiceConfig, report: Report): void {
  const schemes = schemesOf(service);
  const { tls, protocol } = service;
  if (tls !== undefined) {
    if (!schemes.has('https')) {
      report(['tls'], 'applies to `https://` targets only, and this service has none');
    }
    if (tls.cert !== undefined && tls.key === undefined) {
      report(['tls', 'key'], 'is required with tls.cert: the client certificate needs its private key');
    }
    if (tls.key !== undefined && tls.cert === undefined) {
      report(['tls', 'cert'], 'is required with tls.key: the private key needs its client certificate');
    }
  }
  if (protocol === 'h2' && schemes.has('http')) {
    report(
      ['protocol'],
      'h2 is negotiated over TLS (ALPN) and needs `https://` targets; for cleartext HTTP/2 use "h2c"',
    );
  }
  if (protocol === 'h2c' && schemes.has('https')) {
    report(['protocol'], 'h2c is cleartext HTTP/2 and needs `http://` targets; over TLS use "h2"');
  }
}

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/**
 * The files `services.*.tls` names, read and checked: `ca` holds certificates, `cert` a
 * certificate, `key` a private key that matches it. Run by loadConfigFile (with the other file
 * checks), so `validate` and a reload catch them before anything is built on them.
 */
export async function checkUpstreamTlsFiles(
  config: ConfigParts,
  report: Report,
  read: (file: string) => Promise<string> = (file) => readFile(file, 'utf8'),
): Promise<void> {
  const services = config.valid(ServicesSchema, 'services') ?? {};
  await Promise.all(
    Object.entries(services).map(([name, svc]) =>
      svc.tls === undefined ? undefined : checkFiles(svc.tls, ['services', name, 'tls'], report, read),
    ),
  );
}

async function checkFiles(
  tls: UpstreamTlsConfig,
  at: readonly PathSegment[],
  report: Report,
  read: (file: string) => Promise<string>,
): Promise<void> {
  const text = async (field: 'ca' | 'cert' | 'key', file: string): Promise<string | null> => {
    try {
      return await read(file);
    } catch (err) {
      report([...at, field], `cannot read "${file}": ${ioReason(err)}`);
      return null;
    }
  };
  const [ca, cert, key] = await Promise.all([
    tls.ca === undefined ? null : text('ca', tls.ca),
    tls.cert === undefined ? null : text('cert', tls.cert),
    tls.key === undefined ? null : text('key', tls.key),
  ]);
  if (ca !== null && certificates(ca) === null) {
    report([...at, 'ca'], `"${tls.ca}" holds no PEM certificate ("-----BEGIN CERTIFICATE-----")`);
  }
  const leaf = cert === null ? null : (certificates(cert)?.[0] ?? null);
  if (cert !== null && leaf === null) {
    report([...at, 'cert'], `"${tls.cert}" holds no PEM certificate ("-----BEGIN CERTIFICATE-----")`);
  }
  if (key === null) return;
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    report([...at, 'key'], `"${tls.key}" is not a PEM private key (an encrypted key is not supported)`);
    return;
  }
  if (leaf !== null && !leaf.checkPrivateKey(privateKey)) {
    report([...at, 'key'], `"${tls.key}" is not the private key of the certificate in "${tls.cert}"`);
  }
}

/** The certificates of a PEM text; null when it holds none, or one that does not parse. */
function certificates(text: string): X509Certificate[] | null {
  const blocks = text.match(CERT_BLOCK);
  if (blocks === null) return null;
  try {
    return blocks.map((b) => new X509Certificate(b));
  } catch {
    return null;
  }
}

function ioReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES') return 'permission denied';
  if (code === 'EISDIR') return 'it is a directory';
  return code ?? String(err);
}
