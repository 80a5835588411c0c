// The micro-benchmark cases: each one calls Gatehouse's own functions from dist/ (npm run build
// first) the way the request path calls them, on inputs built once. No timing here: run.js times
// the cases, and the smoke test (test/unit/bench-micro.test.ts) runs each of them a few times.
//
// A case is `{ group, name, run(n) }`: `run` makes n calls (cycling through its inputs, so that
// nothing is constant) and returns a number computed from every result, which the runner keeps:
// a result nobody reads could be optimised away, and the call with it.
import crypto, { generateKeyPair, sign } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** @param {string} file a module of dist/, e.g. `router/router.js` */
const dist = (file) => import(pathToFileURL(path.join(REPO_DIR, 'dist', file)).href);

/**
 * @typedef {object} Case
 * @property {string} group
 * @property {string} name
 * @property {(n: number) => number | Promise<number>} run  n calls; a number from every result
 * @property {boolean} [async] `run` returns a promise
 * @property {boolean} [naive] a naïve alternative, for comparison: not Gatehouse's code
 */

const RESOURCES = [
  'users',
  'orders',
  'products',
  'invoices',
  'payments',
  'carts',
  'shipments',
  'reviews',
  'coupons',
  'accounts',
  'subscriptions',
  'plans',
  'webhooks',
  'files',
  'reports',
  'teams',
  'projects',
  'tickets',
  'messages',
  'notifications',
];

/**
 * 110 routes, as a company's gateway has them: per resource a collection (GET, POST), an item by
 * id (GET, PUT, DELETE), a sub-tree under an item, a v2 tree on an exact host, and a tree per
 * tenant on a wildcard host; then a few catch-alls.
 * @returns {{ host?: string, path: string, methods?: string[], name: string }[]}
 */
function routeTable() {
  const routes = [];
  for (const r of RESOURCES) {
    routes.push({ name: `${r}-list`, path: `/api/v1/${r}`, methods: ['GET', 'POST'] });
    routes.push({ name: `${r}-item`, path: `/api/v1/${r}/*`, methods: ['GET', 'PUT', 'DELETE'] });
    routes.push({ name: `${r}-sub`, path: `/api/v1/${r}/*/items/**` });
    routes.push({ name: `${r}-v2`, host: 'api.example.com', path: `/api/v2/${r}/**` });
    routes.push({ name: `${r}-tenant`, host: '*.tenants.example.com', path: `/${r}/**` });
  }
  routes.push({ name: 'admin', host: 'admin.example.com', path: '/**' });
  routes.push({ name: 'static', path: '/static/**', methods: ['GET', 'HEAD'] });
  routes.push({ name: 'health', path: '/health', methods: ['GET'] });
  routes.push({ name: 'root', path: '/', methods: ['GET'] });
  routes.push({ name: 'docs', host: 'docs.example.com', path: '/**' });
  routes.push({ name: 'graphql', path: '/graphql', methods: ['POST'] });
  routes.push({ name: 'ws', path: '/ws/*', methods: ['GET'] });
  routes.push({ name: 'legacy', path: '/api/v0/**' });
  routes.push({ name: 'oauth', host: 'auth.example.com', path: '/oauth/*' });
  routes.push({ name: 'wellknown', path: '/.well-known/**', methods: ['GET'] });
  return routes;
}

/** The naïve router many small gateways have: one RegExp per route, the first that matches wins. */
function naiveRouter(routes) {
  const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const compiled = routes.map((r) => {
    const body =
      r.path === '/'
        ? '/'
        : r.path
            .slice(1)
            .split('/')
            .map((s) => (s === '**' ? '(?:/.*)?' : s === '*' ? '/[^/]+' : `/${escape(s)}`))
            .join('');
    const host =
      r.host === undefined
        ? null
        : r.host.startsWith('*.')
          ? new RegExp(`^.+${escape(r.host.slice(1))}$`)
          : new RegExp(`^${escape(r.host)}$`);
    return { name: r.name, host, methods: r.methods ?? null, path: new RegExp(`^${body}$`) };
  });
  // most specific first, roughly: routes with a host, then longer patterns
  compiled.sort(
    (a, b) => (b.host !== null) - (a.host !== null) || b.path.source.length - a.path.source.length,
  );
  return (host, method, p) => {
    for (const r of compiled) {
      if (r.host !== null && !r.host.test(host)) continue;
      if (r.methods !== null && !r.methods.includes(method)) continue;
      if (r.path.test(p)) return r.name;
    }
    return undefined;
  };
}

/** @returns {Promise<Case[]>} */
async function routeCases() {
  const { Router } = await dist('router/router.js');
  const { parsePattern } = await dist('router/pattern.js');
  const { parseRequestTarget } = await dist('router/request-target.js');
  const { normaliseHost } = await dist('router/host.js');
  const table = routeTable();
  const router = new Router(
    table.map((r) => {
      const p = parsePattern(r.path);
      if (!p.ok) throw new Error(`${r.path}: ${p.reason}`);
      return { host: r.host, segments: p.segments, methods: r.methods, value: r.name };
    }),
  );
  const ids = Array.from({ length: 64 }, (_, i) => (1000 + i * 7919).toString(36));
  const res = (i) => RESOURCES[i % RESOURCES.length];
  /** [host, method, path] */
  const kinds = {
    'item by id (`/api/v1/orders/*`)': (i) => [
      'gateway.example.com',
      'GET',
      `/api/v1/${res(i)}/${ids[i % 64]}`,
    ],
    'deep sub-tree (`/api/v1/x/*/items/**`)': (i) => [
      'gateway.example.com',
      'PATCH',
      `/api/v1/${res(i)}/${ids[i % 64]}/items/${ids[(i + 1) % 64]}/lines/3`,
    ],
    'exact host (`api.example.com`, `/api/v2/**`)': (i) => [
      'api.example.com',
      'GET',
      `/api/v2/${res(i)}/${ids[i % 64]}`,
    ],
    'wildcard host (`*.tenants.example.com`)': (i) => [
      `t${i % 64}.tenants.example.com`,
      'GET',
      `/${res(i)}/${ids[i % 64]}`,
    ],
    'miss (no route: 404)': (i) => ['gateway.example.com', 'GET', `/api/v1/${res(i)}x/${ids[i % 64]}`],
  };
  const inputs = Object.fromEntries(
    Object.entries(kinds).map(([k, f]) => [k, Array.from({ length: 256 }, (_, i) => f(i))]),
  );
  const mix = Object.values(inputs).flatMap((list) => list.slice(0, 52));
  const cases = Object.entries(inputs).map(([kind, list]) => ({
    group: 'route',
    name: `match: ${kind}`,
    run(n) {
      let acc = 0;
      for (let i = 0; i < n; i++) {
        const [h, m, p] = list[i & 255];
        const found = router.match(h, m, p);
        acc += found === undefined ? 1 : found.length;
      }
      return acc;
    },
  }));
  // the whole routing step of request-flow.ts: target parsed, host normalised, route matched
  const raw = mix.map(([h, m, p]) => [`${h}:8080`, m, `${p}?page=2&limit=50`]);
  cases.push({
    group: 'route',
    name: `step: parse target + host + match (mix of the above, ${table.length} routes)`,
    run(n) {
      let acc = 0;
      for (let i = 0; i < n; i++) {
        const [h, m, url] = raw[i % raw.length];
        const target = parseRequestTarget(url);
        const found = target.ok ? router.match(normaliseHost(h), m, target.path) : undefined;
        acc += found === undefined ? 1 : found.length;
      }
      return acc;
    },
  });
  cases.push({
    group: 'route',
    name: 'match: the same mix',
    run(n) {
      let acc = 0;
      for (let i = 0; i < n; i++) {
        const [h, m, p] = mix[i % mix.length];
        const found = router.match(h, m, p);
        acc += found === undefined ? 1 : found.length;
      }
      return acc;
    },
  });
  const naive = naiveRouter(table);
  cases.push({
    group: 'route',
    name: 'naïve: first match in a list of RegExps (same mix)',
    naive: true,
    run(n) {
      let acc = 0;
      for (let i = 0; i < n; i++) {
        const [h, m, p] = mix[i % mix.length];
        const found = naive(h, m, p);
        acc += found === undefined ? 1 : found.length;
      }
      return acc;
    },
  });
  return cases;
}

const b64url = (value) =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url');

/**
 * @param {Promise<{ publicKey: import('node:crypto').KeyObject, privateKey: import('node:crypto').KeyObject }>} keyPair
 * @returns {Promise<{ cases: Case[], close: () => void }>}
 */
async function jwtCases(config, keyPair) {
  const { JwtVerifier, DEFAULT_VERIFIER_TUNING } = await dist('auth/jwt/verifier.js');
  const { PemKeySource } = await dist('auth/jwt/pem.js');
  const { TokenCache } = await dist('auth/jwt/token-cache.js');
  const { looksLikeJws } = await dist('auth/jwt/bearer.js');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gatehouse-micro-'));
  const { publicKey, privateKey } = await keyPair;
  const pem = path.join(dir, 'jwt.pem');
  writeFileSync(pem, publicKey.export({ type: 'spki', format: 'pem' }));
  const jwt = { ...config.auth.jwt, publicKeys: [pem] };
  const keys = new PemKeySource([pem]);
  await keys.ready();
  const now = Math.floor(Date.now() / 1000);
  const header = b64url({ alg: 'RS256', typ: 'JWT', kid: 'k1' });
  // 64 users' tokens, as an Auth0 or Keycloak access token looks (about 800 bytes)
  const tokens = Array.from({ length: 64 }, (_, i) => {
    const payload = b64url({
      iss: jwt.issuer,
      aud: jwt.audience,
      sub: `auth0|65f0c0ffee${String(i).padStart(14, '0')}`,
      iat: now,
      exp: now + 3600,
      jti: `a1b2c3d4-${i}`,
      scope: 'openid profile orders:read orders:write',
      roles: ['customer', 'orders:read', 'orders:write'],
      tier: 'pro',
      azp: 'aBcDeFgHiJkLmNoPqRsTuVwXyZ012345',
    });
    const signature = sign('sha256', Buffer.from(`${header}.${payload}`), privateKey).toString('base64url');
    return `${header}.${payload}.${signature}`;
  });
  const cached = new JwtVerifier(jwt, keys);
  for (const t of tokens) {
    const r = await cached.verify(t);
    if (r.kind !== 'ok') throw new Error(`JWT setup: ${r.kind} ${r.reason ?? ''}`);
  }
  // a cache of 0 entries: every call pays the signature check, as a token seen for the first time
  const uncached = new JwtVerifier(jwt, keys, { ...DEFAULT_VERIFIER_TUNING, cacheEntries: 0 });
  const cases = [
    {
      group: 'jwt',
      name: 'verified-token cache hit (quick: size, shape, SHA-256 key, LRU get)',
      run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += cached.quick(tokens[i & 63]).kind.length;
        return acc;
      },
    },
    {
      group: 'jwt',
      name: 'of which: the cache key (SHA-256 of the token, base64url)',
      run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += TokenCache.key(tokens[i & 63]).length;
        return acc;
      },
    },
    {
      group: 'jwt',
      name: 'of which: the shape check (compact JWS regex over the token)',
      run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += looksLikeJws(tokens[i & 63]) ? 1 : 0;
        return acc;
      },
    },
    // node ≥ 20.12 hashes in one call, without a Hash object (crypto.hash)
    ...(typeof crypto.hash === 'function'
      ? [
          {
            group: 'jwt',
            name: 'alternative: the same key with crypto.hash (one call, no Hash object)',
            naive: true,
            run(n) {
              let acc = 0;
              for (let i = 0; i < n; i++) acc += crypto.hash('sha256', tokens[i & 63], 'base64url').length;
              return acc;
            },
          },
        ]
      : []),
    {
      group: 'jwt',
      name: 'cache miss: RS256 verify (2048-bit key) and claims',
      async: true,
      async run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += (await uncached.verify(tokens[i & 63])).kind.length;
        return acc;
      },
    },
  ];
  return { cases, close: () => rmSync(dir, { recursive: true, force: true }) };
}

/** @returns {Promise<{ cases: Case[], close: () => Promise<void> }>} */
async function limitCases(config) {
  const { compilePlans } = await dist('ratelimit/limiter.js');
  const { admitted, describe } = await dist('ratelimit/decision.js');
  const { rolled, rolledQuota } = await dist('ratelimit/window.js');
  const { MemoryStore } = await dist('ratelimit/memory-store.js');
  const { appendRateLimitHeaders } = await dist('ratelimit/headers.js');
  const { ipSubject, rateLimitKey } = await dist('ratelimit/subject.js');
  const plan = compilePlans(config.rateLimit).get('pro');
  if (plan === undefined) throw new Error('rate-limit setup: no plan "pro"');
  const base = Date.now();
  // stored counts of 256 subjects, part-way through their windows
  const stored = Array.from({ length: 256 }, (_, i) => ({
    limits: plan.limits.map((l) => ({
      index: Math.floor(base / l.windowMs),
      current: 10 + i,
      previous: 40 + i,
    })),
    quota: { period: 0, used: 1000 + i },
  }));
  const hot = new MemoryStore(() => base, {});
  const wide = new MemoryStore(() => base, {});
  const keys = Array.from(
    { length: 10_000 },
    (_, i) => `gh:{rl:pro:ip:2001:db8:${(i >>> 8).toString(16)}:${(i & 255).toString(16)}::}`,
  );
  for (const k of keys) wide.consumeSync(k, plan);
  const decision = hot.consumeSync(keys[0], plan);
  const v4 = Array.from({ length: 256 }, (_, i) => `203.0.113.${i}`);
  const v6 = Array.from(
    { length: 256 },
    (_, i) => `2001:db8:85a3:${i.toString(16)}:8a2e:370:7334:${i.toString(16)}`,
  );
  const cases = [
    {
      group: 'limit',
      name: 'sliding-window decision, pure (2 limits + monthly quota: roll, admit, describe)',
      run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) {
          const now = base + (i & 1023);
          const entry = stored[i & 255];
          const states = plan.limits.map((l, j) => rolled(entry.limits[j], l.windowMs, now));
          const quota = rolledQuota(entry.quota, plan.quota.per, now);
          const outcome = admitted(plan, states, quota, now);
          acc += describe(plan, outcome, states, quota, now).policies.length;
        }
        return acc;
      },
    },
    {
      group: 'limit',
      name: 'in-memory store decide (consumeSync), one subject',
      run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += hot.consumeSync(keys[0], plan).tightest + 1;
        return acc;
      },
    },
    {
      group: 'limit',
      name: 'in-memory store decide (consumeSync), 10 000 subjects cycled',
      run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += wide.consumeSync(keys[i % 10_000], plan).tightest + 1;
        return acc;
      },
    },
    {
      group: 'limit',
      name: 'response headers of a decision (headers: both)',
      run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) {
          const out = [];
          appendRateLimitHeaders(out, decision, 'both');
          acc += out.length;
        }
        return acc;
      },
    },
    {
      group: 'limit',
      name: 'subject key of a client address (IPv4)',
      run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += rateLimitKey('gh:', 'pro', ipSubject(v4[i & 255], 64)).length;
        return acc;
      },
    },
    {
      group: 'limit',
      name: 'subject key of a client address (IPv6, its /64)',
      run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += rateLimitKey('gh:', 'pro', ipSubject(v6[i & 255], 64)).length;
        return acc;
      },
    },
  ];
  return { cases, close: () => Promise.all([hot.close(), wide.close()]) };
}

/** @returns {Promise<{ cases: Case[], close: () => Promise<void> }>} */
async function balancerCases(config) {
  const { Service } = await dist('upstream/service.js');
  const { SmoothWeighted } = await dist('stages/service-split/split.js');
  const services = [];
  const cases = [];
  for (const kind of ['round-robin', 'least-request', 'random']) {
    for (const size of [3, 30]) {
      const name = `${kind}-${size}`;
      const origins = config.services[name].targets;
      const service = new Service(name, config.services[name], {
        source: { origins, start: () => undefined, ready: async () => undefined, close: () => undefined },
      });
      services.push(service);
      // a third of the targets out of rotation (1 of 3, 10 of 30): the balancer picks among the rest
      const unhealthy = Math.floor(size / 3);
      for (let i = 0; i < unhealthy; i++) service.setTargetEnabled(origins[i * 3], false);
      const first = service.pick(null);
      // in flight on each target: what least-request compares
      for (let i = 0; i < 64; i++) service.pick(null).inflight++;
      cases.push({
        group: 'balancer',
        name: `${kind}, ${size} targets (${unhealthy} unhealthy): first attempt`,
        run(n) {
          let acc = 0;
          for (let i = 0; i < n; i++) acc += service.pick(null).inflight;
          return acc;
        },
      });
      if (kind !== 'random') {
        const tried = [first];
        cases.push({
          group: 'balancer',
          name: `${kind}, ${size} targets (${unhealthy} unhealthy): retry, avoiding the tried target`,
          run(n) {
            let acc = 0;
            for (let i = 0; i < n; i++) acc += service.pick(tried).inflight;
            return acc;
          },
        });
      }
    }
  }
  for (const size of [3, 30]) {
    const split = new SmoothWeighted(Array.from({ length: size }, (_, i) => 1 + ((i * 37) % 10)));
    cases.push({
      group: 'balancer',
      name: `weighted split between ${size} services (smooth weighted round robin)`,
      run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += split.next();
        return acc;
      },
    });
  }
  return { cases, close: () => Promise.all(services.map((s) => s.close())) };
}

/** node's `rawHeaders` of a browser-like API call, as the gateway receives them */
const REQUEST_RAW = [
  'Host',
  'api.example.com',
  'User-Agent',
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36',
  'Accept',
  'application/json, text/plain, */*',
  'Accept-Encoding',
  'gzip, deflate, br, zstd',
  'Accept-Language',
  'en-GB,en;q=0.9,fr;q=0.8',
  'Authorization',
  'Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.c2ln',
  'Content-Type',
  'application/json',
  'Content-Length',
  '348',
  'Origin',
  'https://app.example.com',
  'Referer',
  'https://app.example.com/orders',
  'Cookie',
  'session=1f2e3d4c5b6a; theme=dark',
  'sec-ch-ua',
  '"Chromium";v="126", "Not.A/Brand";v="24"',
  'sec-fetch-mode',
  'cors',
  'traceparent',
  '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
  'X-Request-Id',
  'c0ffee-4242',
  'Connection',
  'keep-alive',
];

/** the same behind a trusted proxy that adds its chain, plus hop-by-hop and Connection-named fields */
const PROXIED_RAW = [
  ...REQUEST_RAW.slice(0, -2),
  'Connection',
  'keep-alive, X-Debug-Token',
  'Keep-Alive',
  'timeout=5',
  'X-Debug-Token',
  'abc',
  'TE',
  'trailers',
  'X-Forwarded-For',
  '198.51.100.7, 10.1.2.3',
  'X-Forwarded-Proto',
  'https',
  'Forwarded',
  'for=198.51.100.7;proto=https, for=10.1.2.3',
  'X-Consumer-Id',
  'spoofed',
  'X_Real_IP',
  '1.2.3.4',
];

/** an upstream's answer, as undici hands it over */
const RESPONSE_RAW = [
  'Content-Type',
  'application/json; charset=utf-8',
  'Content-Length',
  '1834',
  'Date',
  'Sat, 05 Dec 2026 14:50:00 GMT',
  'ETag',
  'W/"72a-18c0f3a1"',
  'Cache-Control',
  'private, max-age=0, must-revalidate',
  'Vary',
  'Origin, Accept-Encoding',
  'X-Powered-By',
  'Express',
  'Connection',
  'keep-alive',
  'Keep-Alive',
  'timeout=5',
  'Strict-Transport-Security',
  'max-age=63072000',
].map((s) => Buffer.from(s, 'latin1'));

/** @returns {Promise<Case[]>} */
async function headerCases() {
  const { scanRequestHeaders } = await dist('server/request-headers.js');
  const { appendForwarded } = await dist('server/client-address.js');
  const { responseHeaders } = await dist('upstream/response-headers.js');
  const toUpstream = (raw, peer, trusted) => {
    const scan = scanRequestHeaders(raw, trusted, 'drop');
    appendForwarded(scan.forward, 'c0ffee-4242', peer, trusted, '198.51.100.7', scan, '', false);
    return scan.forward.length;
  };
  return [
    {
      group: 'headers',
      name: `request to upstream: scan + forwarding headers (${REQUEST_RAW.length / 2} fields, direct client)`,
      run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += toUpstream(REQUEST_RAW, '198.51.100.7', false);
        return acc;
      },
    },
    {
      group: 'headers',
      name: `request to upstream: trusted proxy, hop-by-hop and Connection-named (${PROXIED_RAW.length / 2} fields)`,
      run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += toUpstream(PROXIED_RAW, '10.1.2.3', true);
        return acc;
      },
    },
    {
      group: 'headers',
      name: `response to client: hop-by-hop removed, X-Request-Id added (${RESPONSE_RAW.length / 2} fields)`,
      run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) {
          const sink = { contentLength: -1 };
          acc += responseHeaders(RESPONSE_RAW, 'c0ffee-4242', false, sink).length + sink.contentLength;
        }
        return acc;
      },
    },
  ];
}

/** @returns {Promise<Case[]>} */
async function observabilityCases() {
  const { requestIdFor } = await dist('server/request-id.js');
  const { Tracing } = await dist('observability/tracing/index.js');
  const { GatewayMetrics } = await dist('observability/metrics.js');
  const { HistogramChild } = await dist('observability/fast-metrics.js');
  const { accessRecord } = await dist('observability/request-observer.js');
  const { bulkDocument } = await dist('observability/access-log/elasticsearch-sink.js');
  const silent = { debug() {}, info() {}, warn() {}, error() {}, child: () => silent };
  const tracing = new Tracing(undefined, silent);
  const metrics = new GatewayMetrics();
  const histogram = new HistogramChild({}, [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]);
  const durations = Array.from({ length: 256 }, (_, i) => 0.0004 + ((i * 7919) % 1000) / 20_000);
  const routes = RESOURCES.map((r) => `${r}-item`);
  const statuses = [200, 200, 200, 201, 204, 304, 404, 200];
  // a response as request-observer.ts gets it; ctx stands for a RequestContext of a route
  // without log hooks (the stages' own onLog, e.g. the consumer id, come on top)
  const ctx = {
    route: { name: 'orders-item' },
    path: '/api/v1/orders/8f3a',
    clientIp: '198.51.100.7',
    upstream: 'http://10.0.0.1:8080',
    upstreamDurationMs: 1.2345678,
    upstreamError: null,
    attempts: 1,
    bodyLength: 0,
    bytesIn: 0,
    log() {},
  };
  const res = {
    ctx,
    req: { method: 'GET', url: '/api/v1/orders/8f3a?x=1', socket: { remoteAddress: '198.51.100.7' } },
    startTime: performance.now(),
    requestId: 'c0ffee-4242',
    trace: { traceId: '0af7651916cd43dd8448eb211c80319c' },
    bytesOut: 1834,
    problemCode: null,
  };
  const record = accessRecord(res, 200, 1.5);
  return [
    {
      group: 'observability',
      name: 'request id: the client’s, checked',
      run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += requestIdFor('c0ffee-4242-aa17').length;
        return acc;
      },
    },
    {
      group: 'observability',
      name: 'request id: a new one (randomUUID)',
      run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += requestIdFor(undefined).length;
        return acc;
      },
    },
    {
      group: 'observability',
      name: 'trace: new trace (trace id, span id, traceparent)',
      run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) acc += tracing.begin(undefined, undefined).traceparent.length;
        return acc;
      },
    },
    {
      group: 'observability',
      name: 'trace: the caller’s continued (parse traceparent, new span id)',
      run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++)
          acc += tracing.begin('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', 'vendor=abc')
            .traceparent.length;
        return acc;
      },
    },
    {
      group: 'observability',
      name: 'request metrics (recordRequest: children lookup, histogram, counter)',
      run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) {
          metrics.recordRequest(routes[i % 20], 'orders', 'GET', statuses[i & 7], durations[i & 255]);
          acc++;
        }
        return acc;
      },
    },
    {
      group: 'observability',
      name: 'of which: histogram observe (12 buckets)',
      run(n) {
        for (let i = 0; i < n; i++) histogram.observe(durations[i & 255]);
        return histogram.count;
      },
    },
    {
      group: 'observability',
      name: 'access-log record built (accessRecord)',
      run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++)
          acc += accessRecord(res, statuses[i & 7], durations[i & 255] * 1000).status;
        return acc;
      },
    },
    {
      group: 'observability',
      name: 'access-log record serialised (_bulk document)',
      run(n) {
        let acc = 0;
        for (let i = 0; i < n; i++) {
          record.status = statuses[i & 7];
          acc += bulkDocument(record).length;
        }
        return acc;
      },
    },
  ];
}

const targetList = (n) =>
  Array.from({ length: n }, (_, i) => `"http://10.0.${i >> 8}.${i & 255}:8080"`).join(', ');

/** services, JWT settings and tiers as the config loader makes them, defaults included */
const MICRO_YAML = `
services:
${['round-robin', 'least-request', 'random']
  .flatMap((kind) =>
    [3, 30].map((size) => `  ${kind}-${size}: { targets: [${targetList(size)}], balancer: ${kind} }`),
  )
  .join('\n')}
auth:
  jwt:
    algorithms: [RS256]
    issuer: https://issuer.example.com/
    audience: https://api.example.com
    publicKeys: [unused.pem]
rateLimit:
  tiers:
    pro:
      limits: [{ requests: 100000000, per: 1s }, { requests: 1000000000, per: 1m }]
      quota: { requests: 100000000000, per: month }
routes:
  - { name: all, match: { path: /** }, service: round-robin-3 }
`;

/** the config loader is imported only by the groups that need it: its modules take a while to load */
async function microConfig() {
  const { loadConfigText } = await dist('config/load.js');
  const loaded = loadConfigText(MICRO_YAML, 'micro.yaml', { env: {} });
  if (!loaded.ok) throw new Error(`micro-benchmark config: ${JSON.stringify(loaded.problems)}`);
  return loaded.config;
}

/** the groups, in the order they run */
export const GROUPS = ['route', 'jwt', 'limit', 'balancer', 'headers', 'observability'];

/**
 * The cases of `groups` (default: all), built once (an RSA key is generated, services are
 * created): `close()` frees them.
 * @param {readonly string[]} [groups]
 * @returns {Promise<{ cases: Case[], close: () => Promise<void> }>}
 */
export async function loadCases(groups = GROUPS) {
  const unknown = groups.filter((g) => !GROUPS.includes(g));
  if (unknown.length > 0) throw new Error(`unknown micro-benchmark groups: ${unknown.join(', ')}`);
  // on the thread pool (hundreds of ms), while the modules load
  const keyPair = groups.includes('jwt')
    ? promisify(generateKeyPair)('rsa', { modulusLength: 2048 })
    : Promise.resolve(null);
  /** @type {ReturnType<typeof microConfig> | null} */
  let config = null;
  const loadConfig = () => (config ??= microConfig());
  /** @type {Record<string, () => Promise<{ cases: Case[], close?: () => unknown }>>} */
  const build = {
    route: async () => ({ cases: await routeCases() }),
    jwt: async () => jwtCases(await loadConfig(), keyPair),
    limit: async () => limitCases(await loadConfig()),
    balancer: async () => balancerCases(await loadConfig()),
    headers: async () => ({ cases: await headerCases() }),
    observability: async () => ({ cases: await observabilityCases() }),
  };
  const built = [];
  for (const group of GROUPS) if (groups.includes(group)) built.push(await build[group]());
  return {
    cases: built.flatMap((b) => b.cases),
    async close() {
      for (const b of built) await b.close?.();
    },
  };
}
