/**
 * The admin web console in a real browser (Debian's chromium, driven by playwright-core) against
 * a real gateway: PostgreSQL key store in a private schema, Redis counters under a private
 * prefix, two real upstreams, the config read from a file. Signs in with the keyboard, watches the
 * live numbers move under load, issues a key and uses it, revokes it and sees the proxy refuse
 * it, takes a target out of rotation and sees traffic move, pushes a broken config and sees the
 * errors, and checks that a read-only token gets no mutating control (and is refused anyway).
 * Screenshots of every page go to test-results/console/.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Gateway } from '../../src/server/gateway.js';
import { configFrom, TestGateway } from '../helpers/gateway.js';
import { request } from '../helpers/http-client.js';
import { AUDIENCE, ISSUER, JwksServer, makeKey, sign, type TestKey } from '../helpers/jwks.js';
import { writeTempConfig } from '../helpers/process.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { createSchema, type PrivateSchema } from '../integration/api-keys-db.js';

const CHROMIUM = '/usr/bin/chromium';
const ADMIN = 'console-admin-0123456789abcdef';
const READ = 'console-read-0123456789abcdef';
const PREFIX = `gh-console-${randomBytes(4).toString('hex')}:`;
const SHOTS = 'test-results/console';

const available = existsSync(CHROMIUM);
// in CI the browser test must run: scripts/test-deps.sh installs chromium there
if (!available && process.env.CI === undefined)
  console.warn(`console browser tests skipped: no ${CHROMIUM} (run scripts/test-deps.sh as root)`);

const yaml = (dbUrl: string, a: Upstream, b: Upstream, jwksUrl: string | null) => `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0, token: ${ADMIN}, readToken: ${READ}, ui: true }
configWatch: false
database: { url: '${dbUrl}' }
redis: { url: redis://127.0.0.1:6379 }
services:
  api: { targets: ['${a.url}', '${b.url}'], balancer: round-robin }
routes:
  - { name: keyed, match: { path: /keyed/** }, service: api, auth: [apiKey] }
  - { name: open, match: { path: /open/** }, service: api, rateLimit: "off" }
  - { name: limited, match: { path: /limited/** }, service: api, rateLimit: ip }
${jwksUrl === null ? '' : '  - { name: jwt, match: { path: /jwt/** }, service: api, auth: [jwt], rateLimit: "off" }'}
auth:
  apiKey: { secret: 'console-key-secret-0123456789abcdef' }
${jwksUrl === null ? '' : `  jwt: { issuer: '${ISSUER}', audience: ${AUDIENCE}, jwksUrl: '${jwksUrl}', revocation: { keyPrefix: '${PREFIX}revoked:' } }`}
rateLimit:
  keyPrefix: '${PREFIX}'
  defaultTier: free
  anonymousTier: anonymous
  tiers:
    anonymous: { limits: [{ requests: 5, per: 1m }] }
    free: { limits: [{ requests: 5, per: 1m }] }
    pro: { limits: [{ requests: 500, per: 1m }] }
logging: { level: silent }
`;

const named = (name: string) =>
  startUpstream((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(name);
  });

let a: Upstream;
let b: Upstream;
let jwks: JwksServer | undefined;
let jwtKey: TestKey;
let schema: PrivateSchema;
let gw: TestGateway;
let file: string;
let configYaml: string;
let context: BrowserContext;
let page: Page;
let profile: string;
const problems: string[] = [];

describe.skipIf(!available && process.env.CI === undefined)('admin console in chromium', () => {
  beforeAll(async () => {
    [a, b] = await Promise.all([named('a'), named('b')]);
    schema = await createSchema();
    // a JWT route with revocation: the consumer page's "revoke sessions" is tested end to end
    jwtKey = await makeKey('console');
    jwks = await JwksServer.start([jwtKey]);
    configYaml = yaml(schema.url, a, b, jwks?.url ?? null);
    file = writeTempConfig(configYaml);
    gw = new TestGateway(await Gateway.start(configFrom(configYaml), { configFile: file }));
    mkdirSync(SHOTS, { recursive: true });
    profile = mkdtempSync(join(tmpdir(), 'gatehouse-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1280, height: 860 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    // a CSP violation, a script error or a failed request of the page fails the run (checked last)
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(m.text());
    });
    page.on('pageerror', (err) => problems.push(err.message));
    page.on('request', (r) => {
      if (!r.url().startsWith(gw.adminUrl)) problems.push(`request to another host: ${r.url()}`);
    });
  }, 30_000);

  afterAll(async () => {
    await context?.close();
    if (profile !== undefined) rmSync(profile, { recursive: true, force: true });
    await gw?.close();
    await Promise.all([a?.close(), b?.close(), jwks?.close()]);
    await schema?.drop();
  });

  const shot = (name: string) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
  const go = async (name: string) => {
    await page.getByRole('link', { name, exact: true }).click();
    await page.locator(`main[data-page="${name}"]`).waitFor();
  };
  const proxy = (path: string, headers: Record<string, string> = {}) =>
    request(`${gw.url}${path}`, { headers });

  it('serves the page and its files with a strict CSP, and only from its fixed map', async () => {
    const pageReply = await request(`${gw.adminUrl}/ui`);
    expect(pageReply.status).toBe(200);
    expect(pageReply.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(pageReply.headers['cache-control']).toBe('no-cache');
    const csp = String(pageReply.headers['content-security-policy']);
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe');
    expect(pageReply.headers['set-cookie']).toBeUndefined();
    const html = pageReply.body.toString();
    expect(html).not.toMatch(/<script(?![^>]*\ssrc=)/);
    expect(html).not.toMatch(/<style|\sstyle=/);
    const js = /src="(\/ui\/app-[A-Z0-9]+\.js)"/.exec(html)?.[1] as string;
    const script = await request(`${gw.adminUrl}${js}`);
    expect(script.status).toBe(200);
    expect(script.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(script.headers['cache-control']).toContain('immutable');
    const again = await request(`${gw.adminUrl}${js}`, {
      headers: { 'if-none-match': String(script.headers.etag) },
    });
    expect(again.status).toBe(304);
    for (const path of [
      '/ui/../package.json',
      '/ui/%2e%2e/package.json',
      '/ui/..%2fpackage.json',
      '/ui/../../etc/passwd',
      '/ui/app.js',
      '/ui//etc/passwd',
    ]) {
      const r = await request(`${gw.adminUrl}${path}`);
      expect(r.status, path).not.toBe(200);
      expect(r.body.toString(), path).not.toContain('"name": "gatehouse"');
    }
    expect((await request(`${gw.adminUrl}/ui`, { method: 'POST' })).status).toBe(405);
  });

  it('signs in with the keyboard, and shows live numbers that move under load', async () => {
    await page.goto(`${gw.adminUrl}/ui`);
    await page.keyboard.press('Tab');
    await expect.poll(() => page.locator(':focus').getAttribute('type')).toBe('password');
    await page.keyboard.type('not-the-token-0123456789');
    await page.keyboard.press('Enter');
    await page.getByRole('alert').filter({ hasText: 'unauthorized_admin' }).waitFor();
    await page.getByLabel('Admin token').fill(ADMIN);
    await page.keyboard.press('Enter');
    await page.getByText('(admin)').waitFor();
    // the token is in sessionStorage, never in a cookie
    expect(await context.cookies()).toEqual([]);

    const agent = new Agent({ keepAlive: true, maxSockets: 4 });
    let running = true;
    const load = Promise.all(
      [0, 1, 2, 3].map(async (n) => {
        while (running) {
          // one client of four goes to a route limited to 5 requests a minute: refusals to count
          await request(`${gw.url}/${n === 3 ? 'limited' : 'open'}/x`, { agent });
          await new Promise((r) => setTimeout(r, 5));
        }
      }),
    );
    try {
      const rps = page.locator('[data-metric="rps"]');
      await expect.poll(async () => Number(await rps.textContent()), { timeout: 10_000 }).toBeGreaterThan(5);
      await expect
        .poll(async () => (await page.locator('[data-metric="p50"]').textContent()) ?? '', { timeout: 5000 })
        .toMatch(/ms$/);
      await expect
        .poll(async () => Number(await page.locator('[data-metric="rejected"]').textContent()), {
          timeout: 5000,
        })
        .toBeGreaterThan(0);
      // a few points on the charts before the picture is taken
      await expect
        .poll(async () => Number(await page.locator('.charts').getAttribute('data-points')), {
          timeout: 12_000,
        })
        .toBeGreaterThanOrEqual(4);
      await shot('overview');
    } finally {
      running = false;
      await load;
      agent.destroy();
    }
    // once the load stops, the rate falls back to 0
    const rps = page.locator('[data-metric="rps"]');
    await expect.poll(async () => Number(await rps.textContent()), { timeout: 10_000 }).toBe(0);
  });

  let keyId = '';
  let secret = '';
  it('issues a key (shown once) that the proxy takes, shows its usage, and revokes it', async () => {
    await go('keys');
    const form = page.getByRole('form', { name: 'issue a key' });
    await form.getByLabel('name').fill('browser-test');
    await form.getByLabel('tier').fill('pro');
    await form.getByRole('button', { name: 'Issue key' }).click();
    secret = (await page.getByTestId('new-key').textContent()) ?? '';
    expect(secret.length).toBeGreaterThan(20);
    keyId = (await page.getByRole('alert', { name: 'new key' }).locator('code').textContent()) ?? '';
    expect(keyId).toMatch(/^[0-9A-Za-z]{12}$/);
    await page.getByRole('button', { name: 'Done' }).click();
    expect(await page.getByTestId('new-key').count()).toBe(0);

    for (let i = 0; i < 3; i++) expect((await proxy('/keyed/x', { 'x-api-key': secret })).status).toBe(200);
    await page.getByRole('button', { name: `details of ${keyId}` }).click();
    await expect
      .poll(() => page.locator('.key-details [data-remaining]').first().textContent())
      .toBe(String(500 - 3));
    await shot('keys');

    // what cannot be undone takes a second press
    await page.getByRole('button', { name: `revoke ${keyId}` }).click();
    expect(await page.locator(`tr[data-key="${keyId}"] [data-status]`).textContent()).toBe('active');
    await page.getByRole('button', { name: `confirm revoke ${keyId}` }).click();
    await expect
      .poll(() => page.locator(`tr[data-key="${keyId}"] [data-status]`).textContent())
      .toBe('revoked');
    await expect
      .poll(async () => (await proxy('/keyed/x', { 'x-api-key': secret })).status, { timeout: 3000 })
      .toBe(401);
  });

  it('edits and rotates a key', async () => {
    const form = page.getByRole('form', { name: 'issue a key' });
    await form.getByLabel('name').fill('to-rotate');
    await form.getByLabel('tier').fill('free');
    await form.getByRole('button', { name: 'Issue key' }).click();
    const id = (await page.getByRole('alert', { name: 'new key' }).locator('code').textContent()) ?? '';
    await page.getByRole('button', { name: 'Done' }).click();
    await page.getByRole('button', { name: `details of ${id}` }).click();
    const edit = page.getByRole('form', { name: `edit ${id}` });
    await edit.getByLabel('tier').fill('pro');
    await edit.getByRole('button', { name: 'Save' }).click();
    await expect.poll(() => page.locator(`tr[data-key="${id}"] td`).nth(2).textContent()).toBe('pro');
    await page.getByRole('button', { name: `rotate ${id}` }).click();
    const replacement = (await page.getByTestId('new-key').textContent()) ?? '';
    expect((await proxy('/keyed/x', { 'x-api-key': replacement })).status).toBe(200);
    await page.getByRole('button', { name: 'Done' }).click();
  });

  it('takes a target out of rotation and traffic moves to the other', async () => {
    await go('services');
    const target = `127.0.0.1:${a.port}`;
    await page.getByRole('button', { name: `disable ${target}` }).click();
    await expect
      .poll(() => page.locator(`tr[data-target="${target}"] [data-state]`).textContent())
      .toBe('disabled');
    await shot('services');
    const answers = new Set<string>();
    for (let i = 0; i < 8; i++) answers.add((await proxy('/open/x')).body.toString());
    expect([...answers]).toEqual(['b']);
    await page.getByRole('button', { name: `enable ${target}` }).click();
    await expect
      .poll(() => page.locator(`tr[data-target="${target}"] [data-state]`).textContent())
      .toBe('healthy');
    for (let i = 0; i < 4; i++) answers.add((await proxy('/open/x')).body.toString());
    expect([...answers].sort()).toEqual(['a', 'b']);
    await page.getByRole('button', { name: 'reset breaker of api' }).click();
    await expect.poll(() => page.locator('[data-breaker="api"]').textContent()).toBe('closed');
  });

  it('lists the routes in match order and tests which one a request hits', async () => {
    await go('routes');
    await expect.poll(() => page.locator('tbody tr').count()).toBe(4);
    const tester = page.getByRole('form', { name: 'route tester' });
    await tester.getByLabel('path').fill('/keyed/orders/1');
    await tester.getByRole('button', { name: 'Test' }).click();
    await expect.poll(() => page.getByTestId('match-result').textContent()).toContain('matches keyed');
    await tester.getByLabel('path').fill('/nowhere');
    await tester.getByRole('button', { name: 'Test' }).click();
    await expect.poll(() => page.getByTestId('match-result').textContent()).toContain('no route matches');
    await shot('routes');
  });

  it('shows the redacted config, and a broken config file is refused with its errors', async () => {
    await go('config');
    const shown = page.getByLabel('effective config', { exact: true });
    await expect.poll(() => shown.textContent()).toContain('[redacted]');
    expect(await shown.textContent()).not.toContain(ADMIN);
    writeFileSync(file, configYaml.replace('balancer: round-robin', 'balancer: sometimes'));
    try {
      await page.getByRole('button', { name: 'Reload from file' }).click();
      const outcome = page.getByTestId('reload-outcome');
      await expect.poll(() => outcome.textContent()).toContain('invalid_config');
      expect(await outcome.locator('li').count()).toBeGreaterThan(0);
      await expect
        .poll(() => outcome.locator('li').first().textContent())
        .toMatch(/gatehouse\.yaml:\d+.*services\.api\.balancer/);
      await shot('config-invalid');
    } finally {
      writeFileSync(file, configYaml);
    }
    await page.getByRole('button', { name: 'Reload from file' }).click();
    await expect.poll(() => page.getByTestId('reload-outcome').textContent()).toContain('Reloaded');
    // the proxy still serves with the running config
    expect((await proxy('/open/x')).status).toBe(200);
  });

  it('shows a consumer, and revokes its sessions', async () => {
    const subject = 'alice';
    const token = await sign(jwtKey, { sub: subject });
    expect((await proxy('/jwt/x', { authorization: `Bearer ${token}` })).status).toBe(200);
    await go('consumers');
    await page.getByLabel('consumer id (key id or JWT sub)').fill(subject);
    await page.getByRole('button', { name: 'Show' }).click();
    await page.locator('table.usage').waitFor();
    await page.getByRole('button', { name: `revoke every token of ${subject}` }).click();
    await page.getByRole('button', { name: `confirm revoke every token of ${subject}` }).click();
    await page.getByRole('status').filter({ hasText: 'is refused' }).waitFor();
    await expect
      .poll(async () => (await proxy('/jwt/x', { authorization: `Bearer ${token}` })).status, {
        timeout: 3000,
      })
      .toBe(401);
    await shot('consumers');
  });

  it('lists the mutating calls in the audit view', async () => {
    await go('audit');
    const rows = page.locator('tbody tr');
    await expect.poll(() => rows.count()).toBeGreaterThan(5);
    const text = (await page.locator('tbody').textContent()) ?? '';
    for (const op of ['createKey', 'revokeKey', 'rotateKey', 'updateKey', 'disableTarget', 'reloadConfig'])
      expect(text).toContain(op);
    expect(text).not.toContain(secret);
    await shot('audit');
  });

  it('a read-only token sees every page but no control, and is refused server-side anyway', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Admin token').fill(READ);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText('(read-only)').waitFor();
    await go('keys');
    await page.locator('tbody tr').first().waitFor();
    expect(await page.getByRole('form', { name: 'issue a key' }).count()).toBe(0);
    expect(await page.getByRole('button', { name: /^revoke / }).count()).toBe(0);
    await go('services');
    await page.locator('tbody tr').first().waitFor();
    expect(await page.getByRole('button', { name: /^disable / }).count()).toBe(0);
    await go('config');
    expect(await page.getByRole('button', { name: 'Reload from file' }).count()).toBe(0);
    await shot('read-only-config');
    // the buttons are hidden, and the server refuses the call all the same
    // (a string: the test is compiled without the DOM's types)
    const status = await page.evaluate(`(async () => {
      const token = sessionStorage.getItem('gatehouse.adminToken') ?? '';
      const r = await fetch('/keys', {
        method: 'POST',
        headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'nope', tier: 'free' }),
      });
      return r.status;
    })()`);
    expect(status).toBe(403);
  });

  it('the page ran without a script error, a CSP violation or a request to another host', () => {
    // the API's refusals the test provoked (a wrong token, the broken config, the read-only
    // token, a missing endpoint) are answers, not faults; anything else the console logs is one
    const faults = problems.filter((p) => !/^Failed to load resource: .* status of 4\d\d/.test(p));
    expect(faults).toEqual([]);
  });
});
