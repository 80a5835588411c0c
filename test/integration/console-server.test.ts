/**
 * The console's server side without a browser: off unless `admin.ui`, refused by the config
 * check without a token, not served when the build is missing, and `GET /whoami`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { consoleServer } from '../../src/admin/console/serve.js';
import { configFrom, startGateway, type TestGateway } from '../helpers/gateway.js';
import { expectProblem, request } from '../helpers/http-client.js';

const TOKEN = 'console-server-0123456789abcdef';
const READ = 'console-reader-0123456789abcdef';
const routes = `
services: { api: { targets: ['http://127.0.0.1:1'] } }
routes: [ { name: r, match: { path: /x }, service: api } ]
`;

describe('admin.ui config', () => {
  it('refuses the console without any admin token, naming the field', () => {
    expect(() => configFrom(`admin: { host: 127.0.0.1, port: 0, ui: true }\n${routes}`)).toThrow(
      /admin\.ui.*needs an admin token/,
    );
    // a read token alone is a token: the console signs in with it (read-only)
    expect(configFrom(`admin: { port: 0, readToken: ${READ}, ui: true }\n${routes}`).admin.ui).toBe(true);
    expect(configFrom(routes).admin.ui).toBe(false);
  });
});

describe('console on the admin port', () => {
  let off: TestGateway;
  let on: TestGateway;
  beforeAll(async () => {
    [off, on] = await Promise.all([
      startGateway(`admin: { host: 127.0.0.1, port: 0, token: ${TOKEN} }\n${routes}`),
      startGateway(
        `admin: { host: 127.0.0.1, port: 0, token: ${TOKEN}, readToken: ${READ}, ui: true }\n${routes}`,
      ),
    ]);
  });
  afterAll(() => Promise.all([off?.close(), on?.close()]));

  it('is not served unless admin.ui is on', async () => {
    for (const path of ['/ui', '/ui/', '/ui/index.html']) {
      const r = await request(`${off.adminUrl}${path}`);
      expectProblem(r, 404, 'not_found');
    }
    expect((await request(`${on.adminUrl}/ui/`)).status).toBe(200);
  });

  it('GET /whoami names the token and its role, never the secret', async () => {
    const read = await request(`${on.adminUrl}/whoami`, { headers: { authorization: `Bearer ${READ}` } });
    expect(JSON.parse(read.body.toString())).toEqual({ id: 'read', role: 'read' });
    const admin = await request(`${on.adminUrl}/whoami`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(JSON.parse(admin.body.toString())).toEqual({ id: 'admin', role: 'admin' });
    expectProblem(await request(`${on.adminUrl}/whoami`), 401, 'unauthorized_admin');
  });
});

describe('console files', () => {
  it('answers 404 (not a crash) when the console was not built, and serves it once it is', async () => {
    let built = false;
    const ui = consoleServer(async () => {
      if (!built) throw new Error('ENOENT');
      return new Map([
        [
          '/ui',
          { body: Buffer.from('<p>hi</p>'), contentType: 'text/html', etag: '"x"', cacheControl: 'no-cache' },
        ],
      ]);
    });
    const answers: Array<{ status: number; body: string; headers: Record<string, unknown> }> = [];
    const fake = () => {
      const res = {
        status: 0,
        headers: {} as Record<string, unknown>,
        body: '',
        headersSent: false,
        writeHead(status: number, headers: Record<string, unknown>) {
          res.status = status;
          Object.assign(res.headers, headers);
          return res;
        },
        setHeader(name: string, value: unknown) {
          res.headers[name] = value;
        },
        end(body?: Buffer | string) {
          answers.push({ status: res.status, body: String(body ?? ''), headers: res.headers });
        },
      };
      return res;
    };
    const req = { method: 'GET', headers: {} } as never;
    await ui.serve(req, fake() as never, '/ui', true, 'r1');
    built = true;
    await ui.serve(req, fake() as never, '/ui', true, 'r2');
    expect(answers[0]?.status).toBe(404);
    expect(answers[0]?.body).toContain('not built');
    expect(answers[1]?.status).toBe(200);
    expect(answers[1]?.headers['content-security-policy']).toContain("frame-ancestors 'none'");
  });
});
