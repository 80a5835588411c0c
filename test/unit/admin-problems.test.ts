/**
 * The admin API answers its errors with the data plane's writer: the same problem+json shape
 * (`type`, `instance` naming the request id), `X-Request-Id`, `Cache-Control: no-store`, the
 * registry's title as the status line's reason phrase.
 */
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAdminServer, type AdminState } from '../../src/admin/admin-server.js';
import type { ReloadResult } from '../../src/server/gateway.js';
import { expectProblem, request } from '../helpers/http-client.js';

let reloadResult: ReloadResult = { ok: true, restartNeeded: [] };
const state: AdminState = {
  tokens: () => ({ token: 'admin-secret' }),
  draining: () => false,
  checks: () => ({}),
  metrics: () => Promise.reject(new Error('no registry')),
  reload: () => Promise.resolve(reloadResult),
  services: () => [],
  handlerFailed: () => undefined,
};
const auth = { authorization: 'Bearer admin-secret' };

let server: Server;
let url: string;
beforeAll(async () => {
  server = createAdminServer(state);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe('admin API problems', () => {
  it('401 unauthorized_admin with its challenge, written like the data plane writes', async () => {
    const reply = await request(`${url}/services`);
    const p = expectProblem(reply, 401, 'unauthorized_admin');
    expect(p).toMatchObject({
      type: 'https://gatehouse.dev/problems/unauthorized_admin',
      title: 'Unauthorized',
    });
    expect(reply.headers['www-authenticate']).toBe('Bearer realm="gatehouse-admin"');
    expect(reply.headers['cache-control']).toBe('no-store');
    expect(reply.rawHeaders.filter((h) => h.toLowerCase() === 'x-request-id')).toHaveLength(1);
  });

  it('404 not_found and 405 method_not_allowed with their reason phrases as titles', async () => {
    const missing = await request(`${url}/nope`, { headers: auth });
    expect(expectProblem(missing, 404, 'not_found').title).toBe('Not Found');
    const wrong = await request(`${url}/services`, { method: 'DELETE', headers: auth });
    expect(expectProblem(wrong, 405, 'method_not_allowed').title).toBe('Method Not Allowed');
  });

  it('400 invalid_config lists the problems in `errors`', async () => {
    reloadResult = {
      ok: false,
      reason: 'invalid_config',
      problems: [{ file: 'g.yaml', line: 3, column: 5, path: 'routes[0]', message: 'bad' }],
    };
    const reply = await request(`${url}/reload`, { method: 'POST', headers: auth });
    const p = expectProblem(reply, 400, 'invalid_config') as { errors?: string[] };
    expect(p.errors).toEqual(['g.yaml:3:5: routes[0]: bad']);
  });

  it('500 internal_error when a handler fails', async () => {
    const reply = await request(`${url}/metrics`);
    expect(expectProblem(reply, 500, 'internal_error').detail).toBe('metrics collection failed');
  });
});
