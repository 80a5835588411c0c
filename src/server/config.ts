/**
 * The server's config: its two listeners, the limits on what clients send, shutdown, processes,
 * and which peers' X-Forwarded-* headers are believed; and the checks across those fields.
 */
import { BlockList } from 'node:net';
import { Type, type StaticDecode } from '@sinclair/typebox';
import {
  AutoOrDuration,
  Duration,
  Port,
  Section,
  Size,
  addAddressOrCidr,
  isLoopbackHost,
  type ConfigCheck,
} from '../config/fields.js';
import { Http2Schema, PlainListenerSchema, TlsSchema, checkProtocols } from './protocols/config.js';

export const ListenSchema = Section(
  {
    host: Type.String({ default: '0.0.0.0', description: 'address the proxy port binds' }),
    port: Port(8080),
    // protocols (protocols/config.ts): HTTPS, HTTP/2, the cleartext listener beside HTTPS
    tls: Type.Optional(TlsSchema),
    http2: Http2Schema,
    plain: Type.Optional(PlainListenerSchema),
  },
  'The proxy (data-plane) listener. The PORT environment variable overrides `port`.',
);

export const AdminSchema = Section(
  {
    host: Type.String({ default: '127.0.0.1', description: 'address the admin port binds' }),
    port: Port(9080),
    token: Type.String({
      default: '',
      description:
        'bearer token of the admin API (token id `admin`, may call everything); required when `host` is not a loopback address, unless `tokens` holds an admin token',
      secret: true,
    }),
    readToken: Type.Optional(
      Type.String({
        pattern: '^(|.{16,})$',
        errorMessage: 'must be at least 16 characters ("" = none)',
        description:
          'a read-only bearer token (token id `read`) for dashboards and console viewers: mutating calls answer it 403; "" = none',
        secret: true,
      }),
    ),
    tokens: Type.Array(
      Type.Object(
        {
          id: Type.String({
            pattern: '^[A-Za-z0-9_.-]{1,64}$',
            description: 'names the token in the audit log (never the secret)',
          }),
          token: Type.String({
            pattern: '^(|.{16,})$',
            errorMessage: 'must be at least 16 characters ("" = this entry is off)',
            description: 'the bearer token; "" turns the entry off (an unset `${VAR:-}`)',
            secret: true,
          }),
          role: Type.Union([Type.Literal('admin'), Type.Literal('read')], {
            description: 'admin: every call; read: calls that change nothing',
          }),
        },
        { additionalProperties: false },
      ),
      { default: [], description: 'more admin tokens, each with an id (for the audit log) and a role' },
    ),
    auditEntries: Type.Integer({
      minimum: 1,
      maximum: 10000,
      default: 1000,
      description: 'mutating admin calls kept in memory for `GET /audit` (each is also logged)',
    }),
    ui: Type.Boolean({
      default: false,
      description:
        'serve the admin web console at `/ui` on the admin port (needs an admin token: the console sends it as a bearer header)',
    }),
  },
  'The admin (control-plane) listener: probes, metrics, management API.',
);

export const WorkersSchema = Type.Union([Type.Integer({ minimum: 1 }), Type.Literal('auto')], {
  default: 1,
  description:
    'processes serving the proxy port; "auto" = one per CPU this process may use: the cgroup CPU limit (a container\'s limit) rounded up, else one per core',
  errorMessage: 'must be a number of processes (1 or more) or "auto" (one per CPU core)',
});

export const ConfigWatchSchema = Type.Boolean({
  default: true,
  description:
    'reload when the config file changes on disk (its directory is watched, so a Kubernetes ConfigMap update is seen); false: only SIGHUP and POST /reload reload',
});

export const TrustedProxiesSchema = Type.Array(Type.String(), {
  default: [],
  description: 'CIDRs or addresses whose X-Forwarded-* headers are believed',
});

export const LimitsSchema = Section(
  {
    bodySize: Size('10mb'),
    headersTimeout: Duration('10s', {
      min: '100ms',
      why: 'node enforces it at most every 100 ms, and at 0 a client could take forever to send its headers',
    }),
    requestTimeout: Duration('60s', {
      zero: 'no limit on the whole request (headersTimeout still applies)',
    }),
    keepAliveTimeout: Duration('5s', {
      min: '1ms',
      why: 'at 0 node never closes an idle keep-alive connection',
    }),
    maxHeaderSize: Size('16kb'),
    maxUrlLength: Size('8kb'),
    headersWithUnderscores: Type.Union(
      [Type.Literal('drop'), Type.Literal('reject'), Type.Literal('allow')],
      {
        default: 'drop',
        description:
          'request headers whose name has "_" (CGI-style upstreams read X_Real_IP as X-Real-IP): drop them, reject the request (400), or allow them (spellings of the headers the gateway controls are dropped still)',
      },
    ),
    sendTimeout: Duration('60s', {
      zero: 'never: a client that stops reading keeps its upstream exchange as long as it stays connected',
    }),
  },
  'Limits on what clients may send, and how slowly they send and read.',
);

export const ShutdownSchema = Section(
  {
    acceptGrace: AutoOrDuration(
      'auto',
      'after SIGTERM, how long the proxy port keeps accepting and serving (with /readyz 503 and Connection: close) before it closes, so that connections sent while the load balancer and Kubernetes endpoints catch up are not refused; "auto" = 5s when KUBERNETES_SERVICE_HOST is set (a Kubernetes pod), else 0',
      '5s in a Kubernetes pod, else 0',
    ),
    drainTimeout: Duration('30s', { zero: 'cut the remaining connections at once, without waiting' }),
  },
  'Graceful shutdown: on SIGTERM, /readyz turns 503, the proxy port accepts for `acceptGrace` more, then closes; in-flight requests get `drainTimeout` to finish.',
);

/** The admin port's exposure, the two ports, the timeouts node:http takes, the trusted proxies. */
export const checkServer: ConfigCheck = (config, report) => {
  const listen = config.valid(ListenSchema, 'listen');
  const admin = config.valid(AdminSchema, 'admin');
  const limits = config.valid(LimitsSchema, 'limits');
  if (admin) checkAdminTokens(admin, report);
  if (admin?.ui === true && !anyAdminToken(admin))
    report(
      ['admin', 'ui'],
      'needs an admin token (admin.token, admin.readToken or admin.tokens): the console signs in with one',
    );
  if (
    admin &&
    !isLoopbackHost(admin.host) &&
    admin.token === '' &&
    !admin.tokens.some((t) => t.role === 'admin')
  ) {
    report(
      ['admin', 'token'],
      `is required when the admin port binds a non-loopback address (${admin.host})`,
    );
  }
  if (admin && listen && admin.port !== 0 && admin.port === listen.port) {
    report(['admin', 'port'], `must differ from listen.port (both are ${listen.port})`);
  }
  if (limits && limits.requestTimeout !== 0 && limits.headersTimeout > limits.requestTimeout) {
    // node:http refuses to start with such a pair
    report(
      ['limits', 'headersTimeout'],
      `must not be longer than limits.requestTimeout (${limits.requestTimeout} ms)`,
    );
  }
  for (let i = 0; i < config.length('trustedProxies'); i++) {
    const entry = config.valid(TrustedProxiesSchema.items, 'trustedProxies', i);
    if (entry === undefined) continue;
    const err = addAddressOrCidr(new BlockList(), entry);
    if (err) report(['trustedProxies', i], `must be an IP address or CIDR such as "10.0.0.0/8": ${err}`);
  }
  checkProtocols(config, report);
};

/** Admin tokens: each id names one token in the audit log, and no secret serves two ids. */
function checkAdminTokens(admin: StaticDecode<typeof AdminSchema>, report: Parameters<ConfigCheck>[1]): void {
  const ids = new Map<string, string>();
  const secrets = new Map<string, string>();
  const seen = (
    id: string,
    token: string,
    idPath: Array<string | number>,
    tokenPath: Array<string | number>,
  ) => {
    if (token === '') return;
    const other = ids.get(id);
    if (other !== undefined) report(idPath, `"${id}" is already the id of ${other}`);
    const same = secrets.get(token);
    if (same !== undefined) report(tokenPath, `is the same token as ${same}: each token has one id`);
    ids.set(id, tokenPath.join('.'));
    secrets.set(token, tokenPath.join('.'));
  };
  seen('admin', admin.token, ['admin', 'token'], ['admin', 'token']);
  if (admin.readToken !== undefined)
    seen('read', admin.readToken, ['admin', 'readToken'], ['admin', 'readToken']);
  admin.tokens.forEach((t, i) =>
    seen(t.id, t.token, ['admin', 'tokens', i, 'id'], ['admin', 'tokens', i, 'token']),
  );
}

const anyAdminToken = (admin: StaticDecode<typeof AdminSchema>): boolean =>
  admin.token !== '' ||
  (admin.readToken !== undefined && admin.readToken !== '') ||
  admin.tokens.some((t) => t.token !== '');
