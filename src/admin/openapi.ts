/** The admin API's OpenAPI 3.1 document (`GET /openapi.json`). Grows with the admin API. */
import { PROBLEM_CODES, PROBLEM_REGISTRY, PROBLEM_TYPE_BASE } from '../problems/registry.js';

/** the codes the admin port answers with */
const ADMIN_CODES = PROBLEM_CODES.filter((c) => PROBLEM_REGISTRY[c].port !== 'proxy');

const problemRef = { $ref: '#/components/schemas/Problem' };
const problemResponse = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: problemRef } },
});

export function openApiDocument(): Record<string, unknown> {
  return {
    openapi: '3.1.0',
    info: { title: 'Gatehouse admin API', version: '1' },
    components: {
      securitySchemes: { adminToken: { type: 'http', scheme: 'bearer' } },
      schemas: {
        Problem: {
          type: 'object',
          required: ['type', 'title', 'status', 'code'],
          properties: {
            type: {
              type: 'string',
              format: 'uri',
              description: `${PROBLEM_TYPE_BASE}<code>, documented in docs/errors.md#<code>`,
            },
            title: { type: 'string' },
            status: { type: 'integer' },
            detail: { type: 'string' },
            instance: {
              type: 'string',
              format: 'uri',
              description: 'the request id (X-Request-Id) as a URI: urn:uuid:<id>',
            },
            code: { type: 'string', enum: ADMIN_CODES },
            errors: { type: 'array', items: { type: 'string' } },
          },
        },
      },
    },
    security: [{ adminToken: [] }],
    paths: {
      '/livez': {
        get: {
          summary: 'the process is alive (never checks dependencies)',
          security: [],
          responses: { '200': { description: 'alive' } },
        },
      },
      '/healthz': {
        get: { summary: 'alias of /livez', security: [], responses: { '200': { description: 'alive' } } },
      },
      '/readyz': {
        get: {
          summary: 'ready to take traffic; 503 while draining',
          security: [],
          parameters: [
            {
              name: 'verbose',
              in: 'query',
              required: false,
              schema: { type: 'string' },
              description: 'list each check',
            },
          ],
          responses: { '200': { description: 'ready' }, '503': { description: 'draining or not ready' } },
        },
      },
      '/reload': {
        post: {
          summary:
            're-read the config file (SIGHUP does the same); an invalid file is rejected and the running config kept',
          responses: {
            '200': {
              description: 'reloaded; `restartNeeded` lists changed settings that apply only after a restart',
            },
            '400': problemResponse(
              'the file is invalid; `errors` lists every problem as file:line:column: path: message',
            ),
            '401': problemResponse('missing or wrong admin token'),
            '500': problemResponse(
              '`reload_failed`: the file is valid but the new config could not be put to work (`detail` says why); what it built is closed and the running config kept',
            ),
          },
        },
      },
      '/services': {
        get: {
          summary:
            "each service's targets with their health (active check, passive ejection), in-flight requests, and the circuit breaker's state",
          responses: {
            '200': {
              description:
                '`{ services: [{ name, balancer, discovery, panic, breaker: { state, enabled, requests, failures, retryAfterMs }, targets: [{ target, healthy, inflight, activeCheck, lastCheckError, ejected, ejectedForMs, consecutiveFailures }] }] }`',
            },
            '401': problemResponse('missing or wrong admin token'),
          },
        },
      },
      '/metrics': {
        get: {
          summary: 'Prometheus metrics (text exposition format)',
          security: [],
          responses: { '200': { description: 'metrics', content: { 'text/plain': {} } } },
        },
      },
      '/keys': {
        post: {
          summary:
            'issue an API key: {name, tier, roles?, expiresAt?} → {id, key, ...}; the only time the key is shown',
          responses: {
            '201': { description: 'created' },
            '400': problemResponse('invalid request'),
            '401': problemResponse('missing or wrong admin token'),
            '503': problemResponse('the key store is unavailable'),
          },
        },
        get: {
          summary: 'list keys (never the keys themselves)',
          responses: { '200': { description: 'keys' } },
        },
      },
      '/keys/{id}': {
        parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
        get: {
          summary: 'one key',
          responses: { '200': { description: 'the key' }, '404': problemResponse('no such key') },
        },
        delete: {
          summary: 'revoke the key (every instance refuses it within 1 s)',
          responses: { '200': { description: 'revoked' }, '404': problemResponse('no such key') },
        },
      },
      '/keys/{id}/rotate': {
        parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }],
        post: {
          summary: 'issue a replacement: {grace} → new key; the old one stays valid for `grace`',
          responses: {
            '201': { description: 'the new key' },
            '404': problemResponse('no such key'),
            '409': problemResponse('the key is expired, revoked or already rotated (nothing created)'),
          },
        },
      },
      '/openapi.json': {
        get: { summary: 'this document', responses: { '200': { description: 'OpenAPI 3.1' } } },
      },
    },
  };
}
