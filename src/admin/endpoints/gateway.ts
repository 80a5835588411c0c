/**
 * The gateway itself: probes, metrics, status, the effective config, reload, the log level,
 * a manual drain, and the audit log.
 */
import { Type } from '@sinclair/typebox';
import { formatProblem } from '../../config/problems.js';
import { problem } from '../../problems/registry.js';
import type { AdminContext } from '../context.js';
import { configHash, redactedConfig } from '../redact.js';
import { AdminProblem, defineRoute, ok } from '../route-table.js';
import { Empty } from '../schemas.js';

const route = defineRoute<AdminContext>();

const Alive = Type.Object({ status: Type.Literal('ok') }, { additionalProperties: false });
const Checks = Type.Record(Type.String(), Type.Union([Type.Boolean(), Type.Literal('degraded')]));
const Readiness = Type.Object(
  {
    status: Type.Union([Type.Literal('ready'), Type.Literal('draining'), Type.Literal('not ready')]),
    checks: Type.Optional(Checks),
  },
  { additionalProperties: false },
);
const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const Level = Type.Union(
  LEVELS.map((l) => Type.Literal(l)),
  { description: 'a pino level', errorMessage: `one of ${LEVELS.join(', ')}` },
);
const Applied = Type.Object(
  { processes: Type.Integer({ minimum: 0, description: 'processes of this instance that applied it' }) },
  { additionalProperties: false },
);

/** Whether the key store answers (its clock, within 1 s). */
async function probeKeyStore(ctx: AdminContext): Promise<'ready' | 'unavailable'> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('timeout')), 1000);
  });
  try {
    await Promise.race([ctx.keys.open().then(({ repo }) => repo.now()), late]);
    return 'ready';
  } catch {
    return 'unavailable';
  } finally {
    clearTimeout(timer);
  }
}

const readiness = (ctx: AdminContext, verbose: boolean) => {
  const { state } = ctx;
  const checks = { ...state.checks(), accepting: !state.draining() };
  const ready = Object.values(checks).every((v) => v !== false);
  const body: Record<string, unknown> = {
    status: ready ? 'ready' : state.draining() ? 'draining' : 'not ready',
  };
  if (verbose) body.checks = checks;
  return { status: ready ? 200 : 503, body, ...(ready ? {} : { headers: { 'retry-after': '1' } }) };
};

export const gatewayRoutes = [
  route({
    method: 'GET',
    path: '/livez',
    operationId: 'livez',
    tag: 'probes',
    summary: 'The process is alive (never checks dependencies)',
    open: true,
    mutating: false,
    responses: { 200: { description: 'alive', schema: Alive } },
    handler: () => ok({ status: 'ok' }),
  }),
  route({
    method: 'GET',
    path: '/healthz',
    operationId: 'healthz',
    tag: 'probes',
    summary: 'Alias of /livez',
    open: true,
    mutating: false,
    responses: { 200: { description: 'alive', schema: Alive } },
    handler: () => ok({ status: 'ok' }),
  }),
  route({
    method: 'GET',
    path: '/readyz',
    operationId: 'readyz',
    tag: 'probes',
    summary: 'Ready to take traffic; 503 while draining or not ready',
    open: true,
    mutating: false,
    query: Type.Object(
      { verbose: Type.Optional(Type.String({ maxLength: 100, description: 'present: list each check' })) },
      { additionalProperties: false },
    ),
    responses: {
      200: { description: 'ready', schema: Readiness },
      503: { description: 'draining or not ready', schema: Readiness },
    },
    handler: ({ query }, ctx) => readiness(ctx, query.verbose !== undefined),
  }),
  route({
    method: 'GET',
    path: '/metrics',
    operationId: 'metrics',
    tag: 'probes',
    summary: 'Prometheus metrics (text exposition format)',
    open: true,
    mutating: false,
    responses: { 200: { description: 'metrics', contentType: 'text/plain' } },
    handler: async (_input, ctx) => {
      const m = await ctx.state.metrics().catch(() => {
        throw new AdminProblem(problem('internal_error', 'metrics collection failed'));
      });
      return { status: 200, body: m.body, contentType: m.contentType };
    },
  }),
  route({
    method: 'GET',
    path: '/status',
    operationId: 'getStatus',
    tag: 'gateway',
    summary: 'Version, uptime, config hash and load time, workers, store readiness',
    mutating: false,
    responses: {
      200: {
        description: 'this instance',
        schema: Type.Object(
          {
            version: Type.String(),
            commit: Type.Union([Type.String(), Type.Null()], {
              description: 'null when the build did not record it',
            }),
            startedAt: Type.String({ format: 'date-time' }),
            uptimeSeconds: Type.Number({ minimum: 0 }),
            config: Type.Object(
              {
                hash: Type.String({
                  description: 'SHA-256 of the redacted effective config (as GET /config)',
                }),
                loadedAt: Type.String({ format: 'date-time' }),
              },
              { additionalProperties: false },
            ),
            workers: Type.Object(
              {
                count: Type.Integer({ minimum: 1 }),
                mode: Type.Union([Type.Literal('single'), Type.Literal('cluster')]),
                pid: Type.Integer(),
              },
              { additionalProperties: false },
            ),
            draining: Type.Boolean(),
            logLevel: Type.String(),
            stores: Type.Object(
              {
                redis: Type.Union([
                  Type.Literal('ready'),
                  Type.Literal('unavailable'),
                  Type.Literal('unused'),
                ]),
                postgres: Type.Union([
                  Type.Literal('ready'),
                  Type.Literal('unavailable'),
                  Type.Literal('unused'),
                ]),
                keyStore: Type.Union(
                  [Type.Literal('ready'), Type.Literal('unavailable'), Type.Literal('unused')],
                  {
                    description: 'the API-key store (PostgreSQL or SQLite), asked for its clock within 1 s',
                  },
                ),
              },
              { additionalProperties: false },
            ),
            checks: Checks,
          },
          { additionalProperties: false },
        ),
      },
    },
    handler: async (_input, ctx) => {
      const { state } = ctx;
      const rt = ctx.runtime();
      const info = state.process?.() ?? {
        version: 'unknown',
        commit: null,
        startedAt: Date.now(),
        configLoadedAt: Date.now(),
        workers: { count: 1, mode: 'single' as const, pid: process.pid },
      };
      const checks = state.checks();
      const keyStore = rt.config.auth?.apiKey === undefined ? 'unused' : await probeKeyStore(ctx);
      return ok({
        version: info.version,
        commit: info.commit,
        startedAt: new Date(info.startedAt).toISOString(),
        uptimeSeconds: Math.max(0, (Date.now() - info.startedAt) / 1000),
        config: { hash: configHash(rt.config), loadedAt: new Date(info.configLoadedAt).toISOString() },
        workers: info.workers,
        draining: state.draining(),
        logLevel: ctx.logger().level,
        stores: {
          // the rate limiter's breaker says whether Redis answers
          redis:
            rt.config.redis === undefined || rt.rateLimiter === null
              ? 'unused'
              : rt.rateLimiter.store.isUnavailable
                ? 'unavailable'
                : 'ready',
          postgres: rt.config.database.url === undefined ? 'unused' : keyStore,
          keyStore,
        },
        checks,
      });
    },
  }),
  route({
    method: 'GET',
    path: '/config',
    operationId: 'getConfig',
    tag: 'gateway',
    summary: 'The effective config (defaults applied, secrets redacted) and its hash',
    description:
      'Fields the config schema marks secret (admin tokens, the key secret, credentials) read `[redacted]`; passwords in URLs read `redacted`.',
    mutating: false,
    responses: {
      200: {
        description: 'the running config',
        schema: Type.Object(
          { hash: Type.String(), config: Type.Record(Type.String(), Type.Unknown()) },
          { additionalProperties: false },
        ),
      },
    },
    handler: (_input, ctx) => {
      const config = ctx.runtime().config;
      return ok({ hash: configHash(config), config: redactedConfig(config) });
    },
  }),
  route({
    method: 'POST',
    path: '/reload',
    operationId: 'reloadConfig',
    tag: 'gateway',
    summary: 'Re-read the config file (as SIGHUP); an invalid file is refused and the running config kept',
    mutating: true,
    body: Empty,
    bodyOptional: true,
    responses: {
      200: {
        description: '`restartNeeded` lists changed settings that apply only after a restart',
        schema: Type.Object(
          { status: Type.Literal('reloaded'), restartNeeded: Type.Array(Type.String()) },
          { additionalProperties: false },
        ),
      },
    },
    problems: ['reload_unavailable', 'invalid_config', 'reload_failed'],
    handler: async (_input, ctx) => {
      const reload = ctx.state.reload;
      if (reload === null)
        throw new AdminProblem(
          problem('reload_unavailable', 'the gateway was not started from a config file'),
        );
      const result = await reload().catch(() => {
        throw new AdminProblem(problem('internal_error', 'reload failed'));
      });
      if (result.ok) return ok({ status: 'reloaded', restartNeeded: result.restartNeeded });
      if (result.reason === 'invalid_config')
        throw new AdminProblem({
          ...problem('invalid_config', 'the config file is invalid; the running config is kept'),
          errors: result.problems.map(formatProblem),
        });
      throw new AdminProblem(problem('reload_failed', `${result.detail}; the running config is kept`));
    },
  }),
  route({
    method: 'PUT',
    path: '/logging/level',
    operationId: 'setLogLevel',
    tag: 'gateway',
    summary:
      "Change the log level at runtime (every process of this instance); a reload restores the config's",
    mutating: true,
    body: Type.Object({ level: Level }, { additionalProperties: false }),
    responses: {
      200: {
        description: 'applied',
        schema: Type.Object({ level: Level, ...Applied.properties }, { additionalProperties: false }),
      },
    },
    target: ({ body }) => (body as { level: string }).level,
    handler: async ({ body }, ctx) =>
      ok({ level: body.level, processes: await ctx.control({ kind: 'logLevel', level: body.level }) }),
  }),
  drainRoute(true),
  drainRoute(false),
  route({
    method: 'GET',
    path: '/audit',
    operationId: 'getAudit',
    tag: 'gateway',
    summary: 'The last mutating admin calls answered by this process, newest first',
    description:
      'Kept in memory (`admin.auditEntries`), per process; every entry is also a log line with `audit: true`.',
    mutating: false,
    query: Type.Object(
      { limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, default: 100 })) },
      { additionalProperties: false },
    ),
    responses: {
      200: {
        description: 'entries',
        schema: Type.Object(
          {
            entries: Type.Array(
              Type.Object(
                {
                  time: Type.String({ format: 'date-time' }),
                  tokenId: Type.Union([Type.String(), Type.Null()]),
                  method: Type.String(),
                  path: Type.String(),
                  operationId: Type.String(),
                  target: Type.Union([Type.String(), Type.Null()]),
                  status: Type.Integer(),
                  outcome: Type.Union([Type.Literal('ok'), Type.Literal('refused'), Type.Literal('failed')]),
                  requestId: Type.String(),
                },
                { additionalProperties: false },
              ),
            ),
          },
          { additionalProperties: false },
        ),
      },
    },
    handler: ({ query }, ctx) => ok({ entries: ctx.audit.last(query.limit ?? 100) }),
  }),
];

/** `POST /drain` (on) and `DELETE /drain` (off): readiness fails, or answers again, per instance. */
function drainRoute(on: boolean) {
  return route({
    method: on ? 'POST' : 'DELETE',
    path: '/drain',
    operationId: on ? 'startDrain' : 'stopDrain',
    tag: 'gateway',
    summary: on
      ? 'Fail readiness so that load balancers drain this instance; it keeps serving meanwhile'
      : 'Undo POST /drain: readiness answers as before',
    description: on
      ? '`/readyz` answers 503 `draining` and proxy responses carry `Connection: close`; nothing is shut down. `DELETE /drain` undoes it. Per instance (every worker).'
      : 'A shutdown (SIGTERM) in progress is not undone.',
    mutating: true,
    ...(on ? { body: Empty, bodyOptional: true } : {}),
    responses: {
      200: {
        description: on ? 'draining' : 'not draining',
        schema: Type.Object(
          { draining: Type.Literal(on), ...Applied.properties },
          { additionalProperties: false },
        ),
      },
    },
    handler: async (_input, ctx) => ok({ draining: on, processes: await ctx.control({ kind: 'drain', on }) }),
  });
}
