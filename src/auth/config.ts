/**
 * Authentication's and authorization's config: JWT, API keys, roles and their permissions, a
 * route's `auth` and `permissions`; and the checks across them (each route's methods configured,
 * its permissions grantable, the JWT key files readable public keys).
 */
import { createPublicKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Type, type StaticDecode, type TLiteral } from '@sinclair/typebox';
import { Duration, strict, type ConfigParts, type ConfigCheck, type Report } from '../config/fields.js';
import { compileRoles, grantable } from './permissions.js';

const JWT_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
] as const;
export type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number];

export const JwtSchema = Type.Object(
  {
    algorithms: Type.Array(
      Type.Union(JWT_ALGORITHMS.map((a) => Type.Literal(a)) as TLiteral<JwtAlgorithm>[]),
      {
        default: ['RS256'],
        minItems: 1,
        uniqueItems: true,
        description: 'accepted algorithms (never taken from the token)',
      },
    ),
    issuer: Type.Optional(Type.String({ description: 'required `iss`' })),
    audience: Type.Optional(Type.String({ description: 'required `aud`' })),
    jwksUrl: Type.Optional(
      Type.String({ pattern: '^https?://', description: 'JWKS endpoint (cached, refreshed, rotated)' }),
    ),
    publicKeys: Type.Optional(
      Type.Array(Type.String(), { minItems: 1, description: 'PEM files (SPKI public keys)' }),
    ),
    clockTolerance: Duration('60s', { zero: 'no tolerance: exp and nbf are checked to the second' }),
    maxTokenAge: Type.Optional(
      // a duration described as this field: spreading keeps the transform (its symbol keys)
      {
        ...Duration(undefined, { min: '1s', why: 'tokens are issued with a precision of one second' }),
        description:
          'refuse tokens issued longer ago than this (`iat`, which becomes required); absent = no limit',
      },
    ),
    types: Type.Optional(
      Type.Array(
        Type.String({
          pattern: "^[A-Za-z0-9!#$%&'*+.^_`|~-]+(/[A-Za-z0-9!#$%&'*+.^_`|~-]+)?$",
          description: 'a media type, `application/` optional (`JWT`, `at+jwt`)',
          errorMessage: 'must be a media type such as "JWT" or "at+jwt"',
        }),
        {
          minItems: 1,
          uniqueItems: true,
          description:
            'allowed `typ` header values (case-insensitive, `application/` optional); the header is then required; absent = any',
        },
      ),
    ),
    rolesClaim: Type.String({ default: 'roles', description: 'claim holding an array of role names' }),
    tierClaim: Type.String({ default: 'tier', description: 'claim holding the subscription tier' }),
    requireExp: Type.Boolean({ default: true, description: 'refuse tokens without `exp`' }),
  },
  { ...strict, description: 'JWT bearer tokens' },
);

export const ApiKeySchema = Type.Object(
  {
    header: Type.String({ default: 'x-api-key', description: 'request header carrying the key' }),
    secret: Type.String({
      default: '',
      description: 'server secret of the keyed hash (HMAC-SHA-256) of stored keys',
    }),
  },
  { ...strict, description: 'API keys issued by `gatehouse keys`' },
);

export const MtlsSchema = Type.Object(
  {
    identity: Type.Union(
      [Type.Literal('commonName'), Type.Literal('dnsName'), Type.Literal('email'), Type.Literal('uri')],
      {
        default: 'commonName',
        description:
          "which name of the verified client certificate is the consumer's: its subject CN, or a DNS, email or URI subjectAltName (the first one listed in `consumers`)",
      },
    ),
    consumers: Type.Record(
      Type.String({ minLength: 1 }),
      Type.Object(
        {
          roles: Type.Array(Type.String({ pattern: '^[A-Za-z0-9_.-]+$' }), {
            default: [],
            uniqueItems: true,
            description: 'roles (rbac.roles) of this consumer',
          }),
          tier: Type.String({
            default: '',
            pattern: '^[\\x21-\\x7e]{0,64}$',
            description: 'rate-limit tier; empty = rateLimit.defaultTier',
          }),
        },
        strict,
      ),
      {
        minProperties: 1,
        description:
          'certificate name → consumer; a verified certificate naming none of them is refused (401)',
      },
    ),
  },
  {
    ...strict,
    description:
      'client certificates verified by the TLS listener (listen.tls.clientCertificates) as credentials (docs/protocols.md#mtls)',
  },
);

export const AuthSchema = Type.Object(
  {
    jwt: Type.Optional(JwtSchema),
    apiKey: Type.Optional(ApiKeySchema),
    mtls: Type.Optional(MtlsSchema),
    forwardCredentials: Type.Boolean({
      default: true,
      description:
        'send the upstream the JWT the gateway verified, as `Authorization: Bearer <token>` (false: never); an API key and any credential the gateway did not verify are never sent on a route with `auth`',
    }),
  },
  { ...strict, description: 'How consumers authenticate (docs/authentication.md).' },
);

export const RbacSchema = Type.Object(
  {
    roles: Type.Record(
      Type.String({ pattern: '^[A-Za-z0-9_.-]+$' }),
      Type.Array(Type.String({ pattern: '^[A-Za-z0-9_.*-]+:[A-Za-z0-9_.*-]+$|^\\*$' }), {
        uniqueItems: true,
      }),
      {
        default: {},
        additionalProperties: false,
        description: 'role → permissions (resource:action, orders:*, *)',
      },
    ),
  },
  { ...strict, default: {}, description: 'Roles and the permissions they grant.' },
);

/** A route's `auth`. */
export const RouteAuth = Type.Array(
  Type.Union([Type.Literal('jwt'), Type.Literal('apiKey'), Type.Literal('mtls')]),
  {
    uniqueItems: true,
    description: 'credentials accepted on this route, any one suffices; [] or absent = public',
  },
);

/** A route's `permissions`. */
export const RoutePermissions = Type.Array(
  Type.String({ pattern: '^[A-Za-z0-9_.-]+:[A-Za-z0-9_.*-]+$|^\\*$' }),
  {
    uniqueItems: true,
    description: 'permissions (resource:action) the consumer must all have; needs `auth`',
  },
);

export type JwtConfig = StaticDecode<typeof JwtSchema>;
export type ApiKeyConfig = StaticDecode<typeof ApiKeySchema>;
export type MtlsConfig = StaticDecode<typeof MtlsSchema>;
export type AuthConfig = StaticDecode<typeof AuthSchema>;

/** `listen.tls.clientCertificates`, which the server's section owns (its presence is all that matters). */
const ClientCertificates = Type.Object({ ca: Type.String() });

/** `limits.headersWithUnderscores`, which the server's section owns. */
const UnderscoreMode = Type.Object({ headersWithUnderscores: Type.String() });

/**
 * Each method a route uses configured, permissions only with auth and granted by some role, a
 * JWT with one source of keys, an API-key secret long enough and a header requests can carry.
 */
export const checkAuth: ConfigCheck = (config, report) => {
  const auth = config.valid(AuthSchema, 'auth');
  // an `auth` that failed the schema is reported there; its absence is not reported on top
  const authWrong = auth === undefined && config.has('auth');
  const roles = config.valid(RbacSchema.properties.roles, 'rbac', 'roles');
  const jwt = auth?.jwt;
  if (jwt && (jwt.jwksUrl === undefined) === (jwt.publicKeys === undefined)) {
    report(['auth', 'jwt'], 'must have exactly one of `jwksUrl` or `publicKeys`');
  }
  const secret = auth?.apiKey?.secret;
  if (auth?.apiKey && secret !== undefined && secret.length < 16) {
    report(
      ['auth', 'apiKey', 'secret'],
      'must be at least 16 characters (set it from the environment: ${GATEHOUSE_KEY_SECRET})',
    );
  }
  const header = auth?.apiKey?.header;
  if (header?.includes('_') && config.valid(UnderscoreMode, 'limits')?.headersWithUnderscores === 'reject') {
    report(
      ['auth', 'apiKey', 'header'],
      `"${header}" has "_", and limits.headersWithUnderscores: reject refuses every request carrying it; spell it with "-" or choose drop or allow`,
    );
  }
  if (auth?.mtls && config.valid(ClientCertificates, 'listen', 'tls', 'clientCertificates') === undefined) {
    report(
      ['auth', 'mtls'],
      'needs listen.tls.clientCertificates: only a certificate the TLS listener verified names a consumer',
    );
  }
  if (auth?.mtls && roles) {
    for (const [name, entry] of Object.entries(auth.mtls.consumers)) {
      for (const role of entry.roles)
        if (!(role in roles))
          report(['auth', 'mtls', 'consumers', name, 'roles'], `"${role}" is not in rbac.roles`);
    }
  }
  const table = roles ? compileRoles(roles) : null;
  const count = config.length('routes');
  for (let i = 0; i < count; i++) {
    const methods = config.valid(RouteAuth, 'routes', i, 'auth') ?? [];
    const perms = config.valid(RoutePermissions, 'routes', i, 'permissions') ?? [];
    for (const method of methods) {
      if (auth !== undefined && auth[method] === undefined) {
        report(['routes', i, 'auth'], `uses ${method}, but auth.${method} is not configured`);
      } else if (auth === undefined && !authWrong) {
        report(['routes', i, 'auth'], `uses ${method}, but there is no \`auth\` section`);
      }
    }
    if (perms.length > 0 && methods.length === 0) {
      report(
        ['routes', i, 'permissions'],
        'need `auth` on the route: permissions belong to an authenticated consumer',
      );
    }
    if (table) {
      for (const p of perms) {
        if (!grantable(table, p))
          report(['routes', i, 'permissions'], `"${p}" is granted by no role in rbac.roles`);
      }
    }
  }
};

/**
 * The files the config names, read: each `auth.jwt.publicKeys` entry must be a readable PEM
 * public key or certificate (paths relative to the working directory, as the gateway reads them).
 * Run by loadConfigFile, so `validate` and a reload catch a key file that is missing or wrong
 * before anything is built on it.
 */
export async function checkKeyFiles(
  config: ConfigParts,
  report: Report,
  read: (file: string) => Promise<string> = (file) => readFile(file, 'utf8'),
): Promise<void> {
  const files = config.valid(AuthSchema, 'auth')?.jwt?.publicKeys ?? [];
  const found = await Promise.all(
    files.map(async (file): Promise<string | null> => {
      let text: string;
      try {
        text = await read(file);
      } catch (err) {
        return `cannot read "${file}": ${ioReason(err)}`;
      }
      const reason = publicKeyProblem(text);
      return reason === null ? null : `"${file}" ${reason}`;
    }),
  );
  found.forEach((message, i) => {
    if (message !== null) report(['auth', 'jwt', 'publicKeys', i], message);
  });
}

/** What is wrong with the text of a verification key file; null when it holds a public key. */
export function publicKeyProblem(text: string): string | null {
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
    return 'holds a private key; give the public key only (the gateway only verifies)';
  }
  try {
    createPublicKey(text);
    return null;
  } catch {
    return 'is not a PEM public key ("-----BEGIN PUBLIC KEY-----") or certificate';
  }
}

function ioReason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES') return 'permission denied';
  if (code === 'EISDIR') return 'it is a directory';
  return code ?? String(err);
}
