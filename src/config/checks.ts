/** Checks across fields that a schema cannot express. Pure: config in, problems out. */
import { BlockList, isIP } from 'node:net';
import { parsePattern, type Segment } from '../router/pattern.js';
import type { PathSegment } from './problems.js';
import type { GatewayConfig } from './schema.js';

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

const methodsOverlap = (a: readonly string[] | undefined, b: readonly string[] | undefined) =>
  a === undefined || b === undefined || a.some((m) => b.includes(m));

export function checkConfig(config: GatewayConfig): CheckProblem[] {
  const problems: CheckProblem[] = [];
  const add = (path: PathSegment[], message: string) => problems.push({ path, message });

  if (!isLoopbackHost(config.admin.host) && config.admin.token === '') {
    add(
      ['admin', 'token'],
      `required when the admin port binds a non-loopback address (${config.admin.host})`,
    );
  }
  if (config.admin.port !== 0 && config.admin.port === config.listen.port) {
    add(['admin', 'port'], `same port as listen.port (${config.listen.port})`);
  }
  config.trustedProxies.forEach((entry, i) => {
    const err = addAddressOrCidr(new BlockList(), entry);
    if (err) add(['trustedProxies', i], err);
  });

  const parsed: Array<Segment[] | null> = [];
  const names = new Map<string, number>();
  config.routes.forEach((route, i) => {
    const where = (...rest: PathSegment[]) => ['routes', i, ...rest];
    const seen = names.get(route.name);
    if (seen !== undefined) add(where('name'), `duplicate route name "${route.name}" (also routes[${seen}])`);
    else names.set(route.name, i);

    if (!Object.hasOwn(config.services, route.service)) {
      add(
        where('service'),
        `unknown service "${route.service}" (defined: ${Object.keys(config.services).join(', ') || 'none'})`,
      );
    }
    const pattern = parsePattern(route.match.path);
    parsed.push(pattern.ok ? pattern.segments : null);
    if (!pattern.ok) {
      add(where('match', 'path'), `invalid pattern "${route.match.path}": ${pattern.reason}`);
      return;
    }
    if (route.stripPrefix !== undefined) {
      const reason = stripPrefixProblem(route.stripPrefix, pattern.segments);
      if (reason) add(where('stripPrefix'), reason);
    }
    for (let j = 0; j < i; j++) {
      const other = config.routes[j];
      const otherSegments = parsed[j];
      if (!other || !otherSegments) continue;
      if (
        (other.match.host ?? '').toLowerCase() === (route.match.host ?? '').toLowerCase() &&
        sameSegments(otherSegments, pattern.segments) &&
        methodsOverlap(other.match.methods, route.match.methods)
      ) {
        add(where('match'), `matches the same requests as routes[${j}] ("${other.name}")`);
      }
    }
  });
  return problems;
}

/** The prefix must be whole literal segments at the start of the pattern. */
function stripPrefixProblem(prefix: string, segments: Segment[]): string | null {
  if (prefix === '/') return '"/" strips nothing; remove it';
  const parts = prefix.replace(/\/$/, '').slice(1).split('/');
  for (let i = 0; i < parts.length; i++) {
    const seg = segments[i];
    if (seg?.kind !== 'literal' || seg.value !== parts[i]) {
      return `"${prefix}" is not a literal prefix of the route's path pattern`;
    }
  }
  return null;
}
