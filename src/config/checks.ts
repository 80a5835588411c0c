/**
 * Checks across fields that a schema cannot express. Pure: config in, problems out; except
 * checkFiles, which reads the files the config names (so `validate` and a reload catch a key file
 * that is missing or wrong before anything is built on it).
 */
import { createPublicKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { BlockList, isIP } from 'node:net';
import { parsePattern, type Segment } from '../router/pattern.js';
import type { PathSegment } from './problems.js';
import { isDuration, parseDuration } from './units.js';
import { compileRoles, grantable } from '../auth/permissions.js';
import type { GatewayConfig, RouteConfig, ServiceConfig } from './schema.js';

export type CheckProblem = { path: PathSegment[]; message: string };

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export function isLoopbackHost(host: string): boolean {
  return LOOPBACK.has(host) || host.startsWith('127.');
}

/** Parses `10.0.0.0/8`, `::1`, `192.168.1.7` into a BlockList entry; returns an error message or null. */
export function addAddressOrCidr(list: BlockList, entry: string): string | null {
  const [addr = '', bits, extra] = entry.split('/');
  const family = isIP(addr);
  if (family === 0 || extra !== undefined) return `"${entry}" is not an IP address or CIDR`;
  const type = family === 4 ? 'ipv4' : 'ipv6';
  if (bits === undefined) {
    list.addAddress(addr, type);
    return null;
  }
  const prefix = Number(bits);
  if (!/^\d{1,3}$/.test(bits) || prefix > (family === 4 ? 32 : 128))
    return `"${entry}": invalid prefix length`;
  list.addSubnet(addr, prefix, type);
  return null;
}

const sameSegments = (a: Segment[], b: Segment[]) =>
  a.length === b.length &&
  a.every((s, i) => {
    const t = b[i];
    return (
      t !== undefined &&
      s.kind === t.kind &&
      (s.kind !== 'literal' || (t.kind === 'literal' && s.value === t.value))
    );
  });

/**
 * Two routes on the same host and path are ambiguous only when both take all methods or they
 * list a method in common. One listing methods and one taking all is fine: the router prefers
 * the route that lists the request's method (router.ts), the other takes the rest.
 */
const methodsClash = (a: readonly string[] | undefined, b: readonly string[] | undefined) =>
  a === undefined || b === undefined ? a === b : a.some((m) => b.includes(m));

/**
 * What the checks look at. The loader passes only the parts that satisfied the schema (a part
 * left undefined has its checks skipped), so cross-field problems are reported together with
 * schema problems elsewhere in the file; checkConfig() passes a whole valid config.
 */
export type CheckInput = {
  listen?: { readonly port: number } | undefined;
  admin?: { readonly host: string; readonly port: number; readonly token: string } | undefined;
  /** decoded (milliseconds), when the whole section is valid */
  limits?:
    | {
        readonly headersTimeout: number;
        readonly requestTimeout: number;
        readonly headersWithUnderscores?: string;
      }
    | undefined;
  /** an entry that is not a string (already reported by the schema) is undefined */
  trustedProxies?: ReadonlyArray<string | undefined> | undefined;
  /** every service name, with its targets (an entry that failed the schema is undefined) */
  services?: Readonly<Record<string, ReadonlyArray<string | undefined> | undefined>> | undefined;
  /** each service that satisfied its schema, decoded (milliseconds) */
  serviceConfigs?: Readonly<Record<string, ServiceConfig>> | undefined;
  /** one entry per route (indexes kept for the paths), each field only when it is valid */
  routes?: ReadonlyArray<RouteParts> | undefined;
  /** the whole section, when valid */
  rateLimit?:
    | {
        readonly anonymousTier: string;
        readonly defaultTier: string;
        readonly tiers: Readonly<
          Record<string, { readonly limits: readonly unknown[]; readonly quota?: unknown }>
        >;
        readonly unauthenticated?:
          { readonly limits: readonly unknown[]; readonly quota?: unknown } | undefined;
      }
    | undefined;
  /** the `auth` section and `rbac.roles`, when valid */
  auth?:
    | {
        readonly jwt?:
          | { readonly jwksUrl?: string | undefined; readonly publicKeys?: readonly string[] | undefined }
          | undefined;
        readonly apiKey?: { readonly secret: string; readonly header?: string } | undefined;
      }
    | undefined;
  roles?: Readonly<Record<string, readonly string[]>> | undefined;
  /** false when `auth` is present but failed the schema (then its absence is not reported) */
  authValidated?: boolean;
  redis?:
    | {
        readonly url?: string | undefined;
        readonly cluster?: readonly string[] | undefined;
      }
    | undefined;
};

export type RouteParts = {
  name?: string | undefined;
  service?: string | undefined;
  /** `match.path`, when it is a string starting with "/" */
  path?: string | undefined;
  /** the whole `match`, when it is valid (needed to compare two routes) */
  match?: RouteConfig['match'] | undefined;
  stripPrefix?: string | undefined;
  rateLimit?: 'tier' | 'ip' | 'off' | undefined;
  auth?: readonly string[] | undefined;
  permissions?: readonly string[] | undefined;
};

/** The cross-field checks of a whole config that satisfied the schema. */
export function checkConfig(config: GatewayConfig): CheckProblem[] {
  return checkParts({
    listen: config.listen,
    admin: config.admin,
    limits: config.limits,
    trustedProxies: config.trustedProxies,
    services: Object.fromEntries(Object.entries(config.services).map(([name, s]) => [name, s.targets])),
    serviceConfigs: config.services,
    routes: config.routes.map((r) => ({
      name: r.name,
      service: r.service,
      path: r.match.path,
      match: r.match,
      stripPrefix: r.stripPrefix,
      rateLimit: r.rateLimit,
      auth: r.auth,
      permissions: r.permissions,
    })),
    auth: config.auth,
    roles: config.rbac.roles,
    rateLimit: config.rateLimit,
    redis: config.redis,
  });
}

export function checkParts(input: CheckInput): CheckProblem[] {
  const problems: CheckProblem[] = [];
  const add = (path: PathSegment[], message: string) => problems.push({ path, message });
  const { listen, admin, limits, trustedProxies, services, routes = [] } = input;

  if (admin && !isLoopbackHost(admin.host) && admin.token === '') {
    add(['admin', 'token'], `is required when the admin port binds a non-loopback address (${admin.host})`);
  }
  if (admin && listen && admin.port !== 0 && admin.port === listen.port) {
    add(['admin', 'port'], `must differ from listen.port (both are ${listen.port})`);
  }
  if (limits && limits.requestTimeout !== 0 && limits.headersTimeout > limits.requestTimeout) {
    // node:http refuses to start with such a pair
    add(
      ['limits', 'headersTimeout'],
      `must not be longer than limits.requestTimeout (${limits.requestTimeout} ms)`,
    );
  }
  trustedProxies?.forEach((entry, i) => {
    if (entry === undefined) return;
    const err = addAddressOrCidr(new BlockList(), entry);
    if (err) add(['trustedProxies', i], `must be an IP address or CIDR such as "10.0.0.0/8": ${err}`);
  });
  for (const [name, targets] of Object.entries(services ?? {})) {
    targets?.forEach((target, i) => {
      const reason = target === undefined ? null : targetProblem(target);
      if (reason) add(['services', name, 'targets', i], reason);
    });
  }

  for (const [name, service] of Object.entries(input.serviceConfigs ?? {})) {
    for (const p of serviceProblems(service)) add(['services', name, ...p.path], p.message);
  }

  const parsed: Array<Segment[] | null> = [];
  const names = new Map<string, number>();
  routes.forEach((route, i) => {
    parsed.push(null);
    const where = (...rest: PathSegment[]) => ['routes', i, ...rest];
    if (route.name !== undefined) {
      const seen = names.get(route.name);
      if (seen !== undefined) {
        add(where('name'), `must be unique: "${route.name}" is also the name of routes[${seen}]`);
      } else names.set(route.name, i);
    }
    if (services && route.service !== undefined && !Object.hasOwn(services, route.service)) {
      const defined = Object.keys(services);
      add(
        where('service'),
        `names an unknown service "${route.service}" ` +
          (defined.length > 0 ? `(expected one of: ${defined.join(', ')})` : '(no services are defined)'),
      );
    }
    if (route.path === undefined) return;
    const pattern = parsePattern(route.path);
    if (!pattern.ok) {
      add(where('match', 'path'), `invalid pattern "${route.path}": ${pattern.reason}`);
      return;
    }
    if (route.stripPrefix !== undefined) {
      const reason = stripPrefixProblem(route.stripPrefix, route.path, pattern.segments);
      if (reason) add(where('stripPrefix'), reason);
    }
    const match = route.match;
    if (match === undefined) return;
    parsed[i] = pattern.segments;
    for (let j = 0; j < i; j++) {
      const other = routes[j]?.match;
      const otherSegments = parsed[j];
      if (!other || !otherSegments) continue;
      if (
        (other.host ?? '').toLowerCase() === (match.host ?? '').toLowerCase() &&
        sameSegments(otherSegments, pattern.segments) &&
        methodsClash(other.methods, match.methods)
      ) {
        const otherName = routes[j]?.name;
        add(
          where('match'),
          `matches the same requests as routes[${j}]${otherName === undefined ? '' : ` ("${otherName}")`}; ` +
            'make the host, path or methods differ',
        );
      }
    }
  });
  checkRateLimit(input, add);
  checkAuth(input, add);
  return problems;
}

function checkAuth(input: CheckInput, add: (path: PathSegment[], message: string) => void): void {
  const { auth, roles, routes = [] } = input;
  const jwt = auth?.jwt;
  if (jwt && (jwt.jwksUrl === undefined) === (jwt.publicKeys === undefined)) {
    add(['auth', 'jwt'], 'must have exactly one of `jwksUrl` or `publicKeys`');
  }
  const secret = auth?.apiKey?.secret;
  if (auth?.apiKey && secret !== undefined && secret.length < 16) {
    add(
      ['auth', 'apiKey', 'secret'],
      'must be at least 16 characters (set it from the environment: ${GATEHOUSE_KEY_SECRET})',
    );
  }
  const header = auth?.apiKey?.header;
  if (header?.includes('_') && input.limits?.headersWithUnderscores === 'reject') {
    add(
      ['auth', 'apiKey', 'header'],
      `"${header}" has "_", and limits.headersWithUnderscores: reject refuses every request carrying it; spell it with "-" or choose drop or allow`,
    );
  }
  const table = roles ? compileRoles(roles) : null;
  routes.forEach((route, i) => {
    for (const method of route.auth ?? []) {
      if (auth !== undefined && (method === 'jwt' ? auth.jwt : auth.apiKey) === undefined) {
        add(['routes', i, 'auth'], `uses ${method}, but auth.${method} is not configured`);
      } else if (auth === undefined && input.authValidated !== false) {
        add(['routes', i, 'auth'], `uses ${method}, but there is no \`auth\` section`);
      }
    }
    const perms = route.permissions ?? [];
    if (perms.length > 0 && (route.auth ?? []).length === 0) {
      add(
        ['routes', i, 'permissions'],
        'need `auth` on the route: permissions belong to an authenticated consumer',
      );
    }
    if (table) {
      for (const p of perms) {
        if (!grantable(table, p))
          add(['routes', i, 'permissions'], `"${p}" is granted by no role in rbac.roles`);
      }
    }
  });
}

function checkRateLimit(input: CheckInput, add: (path: PathSegment[], message: string) => void): void {
  const { rateLimit, redis, routes = [] } = input;
  if (redis && (redis.url === undefined) === (redis.cluster === undefined)) {
    add(['redis'], 'must have exactly one of `url` (one node) or `cluster` (seed nodes)');
  }
  if (!rateLimit) return;
  const tierNames = Object.keys(rateLimit.tiers);
  const checkTier = (
    where: Array<string | number>,
    tier: { readonly limits: readonly unknown[]; readonly quota?: unknown },
  ) => {
    if (tier.limits.length === 0 && tier.quota === undefined) add(where, 'has neither limits nor a quota');
    const seen = new Map<number, number>();
    tier.limits.forEach((limit, i) => {
      const per = (limit as { per?: unknown }).per;
      if (typeof per !== 'string' || !isDuration(per.trim())) return;
      const ms = parseDuration(per.trim());
      const at = [...where, 'limits', i, 'per'];
      if (ms < 1000 || ms % 1000 !== 0)
        add(at, `must be a whole number of seconds, at least "1s" (got "${per}")`);
      const other = seen.get(ms);
      // two limits over one window would share one counter
      if (other !== undefined) add(at, `repeats the window of limits[${other}]: use one limit per window`);
      else seen.set(ms, i);
    });
  };
  for (const [name, tier] of Object.entries(rateLimit.tiers)) checkTier(['rateLimit', 'tiers', name], tier);
  if (rateLimit.unauthenticated) checkTier(['rateLimit', 'unauthenticated'], rateLimit.unauthenticated);
  const known = (tier: string) => Object.hasOwn(rateLimit.tiers, tier);
  const list = tierNames.length > 0 ? tierNames.join(', ') : 'none';
  let needsAnonymous: number | null = null;
  let needsDefault: number | null = null;
  let defaultedRoute = false;
  routes.forEach((route, i) => {
    if (route.rateLimit === 'ip' || route.rateLimit === 'tier') needsAnonymous ??= i;
    // a route with auth and no rateLimit is limited by tier (effectiveRateLimit): its consumers
    // without a known tier get the default tier, which must exist or they would not be limited
    const byDefault = route.rateLimit === undefined && (route.auth?.length ?? 0) > 0 && tierNames.length > 0;
    if (needsDefault === null && (route.rateLimit === 'tier' || byDefault)) {
      needsDefault = i;
      defaultedRoute = byDefault;
    }
  });
  if (needsAnonymous !== null && !known(rateLimit.anonymousTier)) {
    add(
      ['rateLimit', 'anonymousTier'],
      `names an unknown tier "${rateLimit.anonymousTier}" (used by routes[${needsAnonymous}]; tiers: ${list})`,
    );
  }
  if (needsDefault !== null && !known(rateLimit.defaultTier)) {
    add(
      ['rateLimit', 'defaultTier'],
      `names an unknown tier "${rateLimit.defaultTier}" (used by routes[${needsDefault}]` +
        (defaultedRoute ? ', whose rateLimit is tier by default: it has auth' : '') +
        `; tiers: ${list})`,
    );
  }
}

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

/**
 * The prefix must be whole literal segments at the start of the pattern, so that every path the
 * route matches starts with it (the proxy strips it by length). A trailing slash is ignored:
 * `/api/` strips the same as `/api`.
 */
function stripPrefixProblem(prefix: string, path: string, segments: Segment[]): string | null {
  if (prefix === '/') return 'must not be "/", which strips nothing; remove it';
  const parsed = parsePattern(prefix);
  if (!parsed.ok) return `"${prefix}" is not a valid path prefix: ${parsed.reason}`;
  const parts = parsed.segments;
  const last = parts[parts.length - 1];
  if (parts.length > 1 && last?.kind === 'literal' && last.value === '') parts.pop();
  const literal = parts.every((seg, i) => {
    const own = segments[i];
    return seg.kind === 'literal' && own?.kind === 'literal' && own.value === seg.value;
  });
  return literal
    ? null
    : `must be whole literal segments at the start of match.path ("${path}"); "${prefix}" is not`;
}

/** Checks within one service: where its targets come from, and settings that contradict. */
export function serviceProblems(service: ServiceConfig): CheckProblem[] {
  const problems: CheckProblem[] = [];
  const add = (path: PathSegment[], message: string) => problems.push({ path, message });
  const { targets, discovery, retry, healthCheck, passiveHealth } = service;
  if (targets === undefined && discovery === undefined) {
    add(['targets'], 'is required: list the targets, or find them with `discovery`');
  }
  if (targets !== undefined && discovery !== undefined) {
    add(['discovery'], 'cannot be used together with `targets`: choose one');
  }
  if (discovery !== undefined) {
    const srv = discovery.dns.startsWith('_');
    if (!srv && discovery.port === undefined) {
      add(['discovery', 'port'], `is required for an A/AAAA lookup of "${discovery.dns}"`);
    }
    if (srv && discovery.port !== undefined) {
      add(
        ['discovery', 'port'],
        `must not be set for an SRV lookup ("${discovery.dns}"): the records carry the port`,
      );
    }
  }
  if (retry.backoff > retry.maxBackoff) {
    add(['retry', 'backoff'], `must not be longer than retry.maxBackoff (${retry.maxBackoff} ms)`);
  }
  if (healthCheck !== undefined && healthCheck.timeout >= healthCheck.interval) {
    // the next check is due `interval` after one ends: a hung target is checked every
    // timeout + interval, which stays under twice the interval only this way
    add(['healthCheck', 'timeout'], `must be shorter than healthCheck.interval (${healthCheck.interval} ms)`);
  }
  if (passiveHealth.ejectFor > passiveHealth.maxEjectFor) {
    add(
      ['passiveHealth', 'ejectFor'],
      `must not be longer than passiveHealth.maxEjectFor (${passiveHealth.maxEjectFor} ms)`,
    );
  }
  return problems;
}

/**
 * The files the config names, read: each `auth.jwt.publicKeys` entry must be a readable PEM
 * public key or certificate (paths relative to the working directory, as the gateway reads them).
 */
export async function checkFiles(
  input: Pick<CheckInput, 'auth'>,
  read: (file: string) => Promise<string> = (file) => readFile(file, 'utf8'),
): Promise<CheckProblem[]> {
  const files = input.auth?.jwt?.publicKeys ?? [];
  const found = await Promise.all(
    files.map(async (file, i): Promise<CheckProblem | null> => {
      const path = ['auth', 'jwt', 'publicKeys', i];
      let text: string;
      try {
        text = await read(file);
      } catch (err) {
        return { path, message: `cannot read "${file}": ${ioReason(err)}` };
      }
      const reason = publicKeyProblem(text);
      return reason === null ? null : { path, message: `"${file}" ${reason}` };
    }),
  );
  return found.filter((p) => p !== null);
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
