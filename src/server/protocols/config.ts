/**
 * The proxy port's protocols: TLS termination (certificates chosen by SNI, client certificates),
 * HTTP/2 (over TLS by ALPN, cleartext h2c by prior knowledge) and its flood limits, and the
 * optional second, cleartext listener that redirects to HTTPS or serves. Part of `listen`
 * (server/config.ts); the checks across these fields are `checkProtocols`.
 */
import { Type, type StaticDecode } from '@sinclair/typebox';
import { Duration, Port, Size, strict, type ConfigCheck } from '../../config/fields.js';

const PemFile = (what: string) => Type.String({ minLength: 1, description: `PEM file: ${what}` });

export const CertificateSchema = Type.Object(
  {
    cert: PemFile('the certificate chain, leaf first'),
    key: PemFile('its private key (unencrypted)'),
    serverNames: Type.Optional(
      Type.Array(
        Type.String({
          pattern: '^(\\*\\.)?[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*$',
          errorMessage: 'must be a host name such as "api.example.com" or "*.example.com"',
        }),
        {
          minItems: 1,
          uniqueItems: true,
          description:
            'SNI names this certificate answers ("*.example.com": one label); absent = the DNS names of its subjectAltName',
        },
      ),
    ),
  },
  { ...strict, description: 'a certificate chosen by the SNI name the client asks for' },
);

export const TlsSchema = Type.Object(
  {
    cert: PemFile('the default certificate chain (no SNI, or a name no other certificate has)'),
    key: PemFile('the default certificate private key (unencrypted)'),
    certificates: Type.Array(CertificateSchema, {
      default: [],
      description: 'more certificates, chosen by SNI; the first whose names match wins',
    }),
    minVersion: Type.Union([Type.Literal('TLSv1.2'), Type.Literal('TLSv1.3')], {
      default: 'TLSv1.2',
      description: 'oldest TLS version accepted',
    }),
    ciphers: Type.Optional(
      Type.String({
        minLength: 1,
        description:
          'OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are always the modern three); absent = ECDHE with AES-GCM or ChaCha20-Poly1305 only',
      }),
    ),
    handshakeTimeout: Duration('10s', { min: '100ms', why: 'a handshake takes a few round trips' }),
    watch: Type.Boolean({
      default: true,
      description:
        'reload the certificates when their files change (their directories are watched: a Kubernetes Secret update is seen); they are re-read on SIGHUP and POST /reload too',
    }),
    clientCertificates: Type.Optional(
      Type.Object(
        {
          ca: PemFile('the CA certificates client certificates must chain to'),
          mode: Type.Union([Type.Literal('required'), Type.Literal('optional')], {
            default: 'required',
            description:
              'required: a handshake without a valid client certificate fails; optional: one is asked for and verified when sent (routes decide with `auth: [mtls]`)',
          }),
        },
        { ...strict, description: 'verify client certificates (mTLS)' },
      ),
    ),
  },
  { ...strict, description: 'TLS termination on the proxy port (HTTPS)' },
);

export const Http2Schema = Type.Object(
  {
    enabled: Type.Boolean({
      default: true,
      description: 'offer HTTP/2 by ALPN on the TLS port (HTTP/1.1 stays available)',
    }),
    cleartext: Type.Boolean({
      default: false,
      description:
        'accept cleartext HTTP/2 with prior knowledge (h2c, as gRPC clients behind a load balancer send it) on the cleartext ports, beside HTTP/1.1; an `Upgrade: h2c` offer is always answered as HTTP/1.1',
    }),
    maxConcurrentStreams: Type.Integer({
      minimum: 1,
      maximum: 10000,
      default: 100,
      description: 'streams a client may have open at once on one connection',
    }),
    maxHeaderListSize: Size('16kb'),
    initialWindowSize: Type.Integer({
      minimum: 65535,
      maximum: 2147483647,
      default: 65535,
      description: 'flow-control window of each stream, in bytes',
    }),
    maxSessionMemory: Type.Integer({
      minimum: 1,
      maximum: 1024,
      default: 10,
      description:
        'MB of nghttp2 memory a connection may hold (queued frames, header tables); over it, new streams are refused',
    }),
    maxResets: Type.Integer({
      minimum: 1,
      default: 200,
      description:
        'streams a client may reset (or have reset) within `resetWindow` before its connection is closed (rapid reset, CVE-2023-44487)',
    }),
    resetWindow: Duration('10s', { min: '100ms', why: 'a shorter window lets any burst through' }),
    maxOutstandingPings: Type.Integer({
      minimum: 1,
      maximum: 1000,
      default: 10,
      description: 'PING frames not yet answered before the connection is closed',
    }),
    maxSettings: Type.Integer({
      minimum: 8,
      maximum: 1000,
      default: 32,
      description: 'entries one SETTINGS frame may carry',
    }),
    idleTimeout: Duration('60s', { zero: 'never: an idle connection stays open' }),
  },
  { ...strict, default: {}, description: 'HTTP/2 to clients and its flood limits' },
);

export const PlainListenerSchema = Type.Object(
  {
    host: Type.Optional(Type.String({ description: 'address it binds; absent = `listen.host`' })),
    port: Port(8080),
    mode: Type.Union([Type.Literal('redirect'), Type.Literal('serve')], {
      default: 'redirect',
      description:
        'redirect: every request gets a redirect to the same URL over HTTPS; serve: it is proxied like on the TLS port',
    }),
    redirectStatus: Type.Union([Type.Literal(301), Type.Literal(302), Type.Literal(307), Type.Literal(308)], {
      default: 308,
      description: 'status of the redirect (308 keeps the method and body; 301 for old clients)',
    }),
    httpsPort: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 65535,
        description: 'port of the redirect `Location`; absent = the TLS port (left out of the URL when 443)',
      }),
    ),
  },
  {
    ...strict,
    description: 'a second, cleartext HTTP listener beside the TLS port (needs `listen.tls`)',
  },
);

export type TlsConfig = StaticDecode<typeof TlsSchema>;
export type Http2Config = StaticDecode<typeof Http2Schema>;
export type PlainListenerConfig = StaticDecode<typeof PlainListenerSchema>;

/** `listen.plain` needs `listen.tls`, on another port. */
export const checkProtocols: ConfigCheck = (config, report) => {
  const listen = config.valid(
    Type.Object({
      port: Type.Integer(),
      tls: Type.Optional(Type.Unknown()),
      plain: Type.Optional(PlainListenerSchema),
    }),
    'listen',
  );
  if (listen?.plain === undefined) return;
  if (listen.tls === undefined)
    report(['listen', 'plain'], 'needs listen.tls (it is the cleartext listener beside the TLS port)');
  else if (listen.plain.port !== 0 && listen.plain.port === listen.port)
    report(['listen', 'plain', 'port'], `must differ from listen.port (both are ${listen.port})`);
};
