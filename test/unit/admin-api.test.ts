/**
 * The admin API's parts that need no server: tokens and roles, the audit ring, secret
 * redaction driven by the config schema, cursors, the route table's consistency, and the
 * generated reference in docs/admin-api.md being current.
 */
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { format, resolveConfig } from 'prettier';
import { describe, expect, it } from 'vitest';
import { ADMIN_ROUTES } from '../../src/admin/admin-server.js';
import { AuditLog, type AuditEntry } from '../../src/admin/audit.js';
import { decodeCursor, encodeCursor } from '../../src/admin/endpoints/keys.js';
import { inMatchOrder, routeTakes } from '../../src/admin/endpoints/routes.js';
import { configHash, redactedConfig, REDACTED } from '../../src/admin/redact.js';
import { adminReference, withReference } from '../../src/admin/reference.js';
import { AdminProblem } from '../../src/admin/route-table.js';
import { identify, tokensConfigured } from '../../src/admin/tokens.js';
import { loadConfigText } from '../../src/config/load.js';
import { formatProblem } from '../../src/config/problems.js';
import { silentLogger } from '../../src/observability/logger.js';
import { closeRuntime, compileRuntime } from '../../src/server/runtime.js';
import { configFrom } from '../helpers/gateway.js';

const settings = {
  token: 'the-admin-token-0123',
  readToken: 'the-read-token-01234',
  tokens: [
    { id: 'ci', token: 'the-ci-token-0123456', role: 'admin' as const },
    { id: 'grafana', token: 'the-grafana-token-01', role: 'read' as const },
    { id: 'off', token: '', role: 'admin' as const },
  ],
};

describe('tokens', () => {
  it('identify each token by id and role, and nothing else', () => {
    const who = (t: string) => identify(settings, `Bearer ${t}`);
    expect(who('the-admin-token-0123')).toEqual({ id: 'admin', role: 'admin' });
    expect(who('the-read-token-01234')).toEqual({ id: 'read', role: 'read' });
    expect(who('the-ci-token-0123456')).toEqual({ id: 'ci', role: 'admin' });
    expect(who('the-grafana-token-01')).toEqual({ id: 'grafana', role: 'read' });
    for (const t of ['', 'the-admin-token-012', 'the-admin-token-01234', 'THE-ADMIN-TOKEN-0123', ' '])
      expect(who(t)).toBeNull();
    expect(identify(settings, undefined)).toBeNull();
    expect(identify(settings, 'Basic the-admin-token-0123')).toBeNull();
    // an entry whose token is "" is off: an empty bearer never matches it
    expect(identify(settings, 'Bearer ')).toBeNull();
  });

  it('no token configured: every caller is the admin (loopback only, checked by the config)', () => {
    expect(tokensConfigured({ token: '' })).toBe(false);
    expect(identify({ token: '' }, undefined)).toEqual({ id: 'anonymous', role: 'admin' });
    expect(tokensConfigured({ token: '', readToken: 'read-token-0123456789' })).toBe(true);
    expect(identify({ token: '', readToken: 'read-token-0123456789' }, undefined)).toBeNull();
  });

  it('the config refuses a repeated id, a token given twice, a short token; names the field', () => {
    const problems = (admin: string) => {
      const r = loadConfigText(`admin: ${admin}\n`, 'g.yaml');
      return r.ok ? [] : r.problems.map(formatProblem);
    };
    expect(
      problems(
        `{ token: aaaaaaaaaaaaaaaaaaaa, tokens: [{ id: admin, token: bbbbbbbbbbbbbbbbbbbb, role: read }] }`,
      ),
    ).toEqual([expect.stringMatching(/admin\.tokens\[0\]\.id: "admin" is already the id of admin\.token/)]);
    expect(
      problems(
        `{ readToken: aaaaaaaaaaaaaaaaaaaa, tokens: [{ id: x, token: aaaaaaaaaaaaaaaaaaaa, role: admin }] }`,
      ),
    ).toEqual([expect.stringMatching(/admin\.tokens\[0\]\.token: is the same token as admin\.readToken/)]);
    expect(problems(`{ readToken: short }`)).toEqual([
      expect.stringMatching(/admin\.readToken: must be at least 16/),
    ]);
    expect(problems(`{ tokens: [{ id: x, token: aaaaaaaaaaaaaaaaaaaa, role: root }] }`)).toHaveLength(1);
    expect(problems(`{ tokens: [{ id: 'a b', token: aaaaaaaaaaaaaaaaaaaa, role: read }] }`)).toHaveLength(1);
    // a non-loopback admin port is fine with an admin token from the list, not with a read one
    expect(
      problems(`{ host: 0.0.0.0, tokens: [{ id: x, token: aaaaaaaaaaaaaaaaaaaa, role: admin }] }`),
    ).toEqual([]);
    expect(problems(`{ host: 0.0.0.0, readToken: aaaaaaaaaaaaaaaaaaaa }`)).toEqual([
      expect.stringMatching(/admin\.token: is required/),
    ]);
  });
});

describe('the audit ring', () => {
  const entry = (n: number): AuditEntry => ({
    time: new Date(n).toISOString(),
    tokenId: 'admin',
    method: 'POST',
    path: `/drain/${n}`,
    operationId: 'startDrain',
    target: null,
    status: 200,
    outcome: 'ok',
    requestId: String(n),
  });

  it('keeps the last `size` entries, newest first, and logs each with audit: true', () => {
    const lines: unknown[] = [];
    const logger = Object.assign(silentLogger(), { info: (obj: unknown) => lines.push(obj) });
    const log = new AuditLog(
      () => logger,
      () => 3,
    );
    for (let i = 1; i <= 5; i++) log.record(entry(i));
    expect(log.last(10).map((e) => e.requestId)).toEqual(['5', '4', '3']);
    expect(log.last(2).map((e) => e.requestId)).toEqual(['5', '4']);
    expect(log.last(0)).toEqual([]);
    expect(lines).toHaveLength(5);
    expect(lines[4]).toMatchObject({ audit: true, requestId: '5', tokenId: 'admin' });
  });

  it('a logger that throws does not fail the call', () => {
    const logger = Object.assign(silentLogger(), {
      info: () => {
        throw new Error('disk full');
      },
    });
    const log = new AuditLog(
      () => logger,
      () => 10,
    );
    expect(() => log.record(entry(1))).not.toThrow();
    expect(log.last(1)).toHaveLength(1);
  });
});

describe('GET /config redaction', () => {
  const config = configFrom(`
admin: { token: admin-token-0123456789, readToken: read-token-0123456789, tokens: [{ id: ci, token: ci-token-0123456789ab, role: admin }] }
database: { url: 'postgres://user:pg-secret@db:5432/gh' }
redis: { url: 'redis://:redis-secret@cache:6379/0' }
auth: { apiKey: { secret: key-secret-0123456789 } }
logging: { access: { elasticsearch: { url: 'https://es:9200', apiKey: es-api-key-secret } } }
services: { a: { targets: ['http://127.0.0.1:1'] } }
`);

  it('every field the schema marks secret, and every URL password', () => {
    const text = JSON.stringify(redactedConfig(config));
    for (const s of [
      'admin-token-0123456789',
      'read-token-0123456789',
      'ci-token-0123456789ab',
      'pg-secret',
      'redis-secret',
      'key-secret-0123456789',
      'es-api-key-secret',
    ])
      expect(text).not.toContain(s);
    const r = redactedConfig(config) as Record<string, Record<string, unknown>>;
    expect(r.admin?.token).toBe(REDACTED);
    expect(r.database?.url).toBe('postgres://user:redacted@db:5432/gh');
    expect(r.redis?.url).toBe('redis://:redacted@cache:6379/0');
    expect(r.services).toEqual(JSON.parse(JSON.stringify(config.services)));
  });

  it('the hash is stable for equal configs and changes with a visible setting', () => {
    const same = configFrom(`
services: { a: { targets: ['http://127.0.0.1:1'] } }
database: { url: 'postgres://user:pg-secret@db:5432/gh' }
redis: { url: 'redis://:redis-secret@cache:6379/0' }
auth: { apiKey: { secret: key-secret-0123456789 } }
logging: { access: { elasticsearch: { url: 'https://es:9200', apiKey: es-api-key-secret } } }
admin: { tokens: [{ id: ci, token: ci-token-0123456789ab, role: admin }], readToken: read-token-0123456789, token: admin-token-0123456789 }
`);
    expect(configHash(same)).toBe(configHash(config));
    expect(configHash(configFrom(`services: { a: { targets: ['http://127.0.0.1:2'] } }`))).not.toBe(
      configHash(config),
    );
  });
});

describe('key cursors', () => {
  it('round-trip, and anything else is a 400', () => {
    const p = { created: '1733400000123456', id: 'Ab3dEf6hIj9k' };
    expect(decodeCursor(encodeCursor(p))).toEqual(p);
    const forged = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
    for (const c of [
      '',
      '!!!!',
      'A'.repeat(201),
      forged(['1 OR 1=1', 'Ab3dEf6hIj9k']),
      forged(['1', "'; DROP TABLE"]),
      forged(['1', 'Ab3dEf6hIj9k', 'x']),
      forged({ created: '1', id: 'Ab3dEf6hIj9k' }),
      forged([1, 'Ab3dEf6hIj9k']),
      forged(['9'.repeat(21), 'Ab3dEf6hIj9k']),
      Buffer.from('not json').toString('base64url'),
    ]) {
      let thrown: unknown;
      try {
        decodeCursor(c);
      } catch (err) {
        thrown = err;
      }
      expect(thrown, c).toBeInstanceOf(AdminProblem);
      expect((thrown as AdminProblem).problem.code).toBe('bad_request');
    }
  });
});

describe('the route table', () => {
  it('one operationId each, one declaration per method and path, mutating means not GET', () => {
    const ids = ADMIN_ROUTES.map((r) => r.operationId);
    expect(new Set(ids).size).toBe(ids.length);
    const keys = ADMIN_ROUTES.map((r) => `${r.method} ${r.path}`);
    expect(new Set(keys).size).toBe(keys.length);
    for (const r of ADMIN_ROUTES) expect(r.mutating, r.operationId).toBe(r.method !== 'GET');
    for (const r of ADMIN_ROUTES.filter((x) => x.open)) expect(r.mutating).toBe(false);
  });

  it('docs/admin-api.md carries the current generated reference (npm run docs:admin)', async () => {
    const file = new URL('../../docs/admin-api.md', import.meta.url).pathname;
    const current = readFileSync(file, 'utf8');
    const next = await format(withReference(current, adminReference(ADMIN_ROUTES)), {
      ...(await resolveConfig(file)),
      filepath: file,
    });
    expect(next === current, 'docs/admin-api.md is not current: run npm run docs:admin').toBe(true);
  });
});

describe('GET /routes: match order', () => {
  it('the first route of the order that takes a request is the one the router picks', () => {
    const config = configFrom(`
services: { s: { targets: ['http://127.0.0.1:1'] } }
routes:
  - { name: r1, match: { path: /a/** }, service: s }
  - { name: r2, match: { path: /a/*, methods: [GET] }, service: s }
  - { name: r3, match: { path: /a/b }, service: s }
  - { name: r4, match: { path: /a/*/c }, service: s }
  - { name: r5, match: { path: /a/b/** , methods: [POST] }, service: s }
  - { name: r6, match: { path: /**, host: '*.x.com' }, service: s }
  - { name: r7, match: { path: /a/*, host: 'api.x.com' }, service: s }
  - { name: r8, match: { path: /a/**, host: '*.api.x.com' }, service: s }
  - { name: r9, match: { path: /, methods: [GET, HEAD] }, service: s }
  - { name: r10, match: { path: /*/c }, service: s }
  - { name: r11, match: { path: /a/ }, service: s }
  - { name: r12, match: { path: /a/b/c, methods: [DELETE] }, service: s }
`);
    const rt = compileRuntime(config);
    const order = inMatchOrder(config.routes);
    const seg = fc.constantFrom('a', 'b', 'c', 'd', '');
    fc.assert(
      fc.property(
        fc.constantFrom('', 'api.x.com', 'b.api.x.com', 'x.com', 'q.x.com', 'other.org'),
        fc.constantFrom('GET', 'POST', 'DELETE', 'HEAD'),
        fc.array(seg, { minLength: 1, maxLength: 4 }),
        (host, method, segments) => {
          const path = `/${segments.join('/')}`;
          const expected = rt.router.match(host, method, path)?.name;
          const first = order.find((r) => routeTakes(r, host, method, path))?.name;
          expect(first, `${method} ${host}${path}`).toBe(expected);
        },
      ),
      { seed: 20261205, numRuns: 2000 },
    );
    void closeRuntime(rt);
  });
});
