/**
 * `gatehouse keys create|list|revoke|rotate` and `gatehouse migrate`: the config's database
 * (`database.url`, else the embedded SQLite file) and its `auth.apiKey.secret`.
 * A new key is printed once, alone on stdout; everything else goes to stderr or is a listing
 * that never holds a key or its hash.
 */
import { Command, type Option } from 'commander';
import type { GatewayConfig } from '../config/schema.js';
import { createKey, rotateKey, viewOf } from '../auth/api-keys/manage.js';
import { checkLifetime, checkNewKey, KeyInputError, type KeyField } from '../auth/api-keys/issue.js';
import { ID_PATTERN } from '../auth/api-keys/format.js';
import { openKeyRepository, type ApiKeyRecord, type KeyRepository } from '../stores/database.js';
import { ErrorCodes, hasCode } from '../problems/error-codes.js';
import { LEGACY_MIGRATIONS_TABLE, type MigrationReport } from '../stores/migrations.js';

export type KeyCliDeps = {
  configOption: () => Option;
  /** loads and validates the config (exits with its problems when invalid) */
  load: (opts: { config?: string }) => Promise<GatewayConfig>;
};

class UsageError extends Error {}

/**
 * Runs a check of `issue.ts`, reporting a refusal against the flag that gave the value (by
 * default `--<field>`), with the configured names when the value is not one of them.
 */
function usage<T>(check: () => T, flag: (field: KeyField) => string = (field) => `--${field}`): T {
  try {
    return check();
  } catch (err) {
    if (!(err instanceof KeyInputError)) throw err;
    const hint = err.configured.length > 0 ? ` (configured: ${err.configured.join(', ')})` : '';
    throw new UsageError(`${flag(err.field)}: ${err.message}${hint}`);
  }
}

function secretOf(config: GatewayConfig): string {
  const secret = config.auth?.apiKey?.secret;
  if (!secret) throw new UsageError('auth.apiKey.secret is not configured: keys cannot be hashed');
  return secret;
}

async function withRepository<T>(config: GatewayConfig, fn: (repo: KeyRepository) => Promise<T>): Promise<T> {
  const repo = await openKeyRepository(config.database);
  try {
    await repo.migrate();
    return await fn(repo);
  } finally {
    await repo.close();
  }
}

/** `migrated (postgres): schema "public" at version 1 (applied 1)` */
export function migrationSummary(kind: string, report: MigrationReport): string {
  const did = [
    report.adopted.length > 0
      ? `adopted ${report.adopted.join(', ')} from the old ${LEGACY_MIGRATIONS_TABLE} table`
      : '',
    report.applied.length > 0 ? `applied ${report.applied.join(', ')}` : '',
  ].filter((d) => d !== '');
  return `migrated (${kind}): ${report.location} at version ${report.version} (${did.join('; ') || 'up to date'})`;
}

/** `now`: the database's clock (a CLI whose clock is off must not show a revoked key in grace) */
function status(k: ApiKeyRecord, now: number): string {
  if (k.revokedAt !== null) {
    return k.revokedAt.getTime() <= now ? 'revoked' : `grace until ${k.revokedAt.toISOString()}`;
  }
  if (k.expiresAt !== null && k.expiresAt.getTime() <= now) return 'expired';
  return 'active';
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows
    .map(
      (r) =>
        r
          .map((c, i) => c.padEnd(widths[i] ?? 0))
          .join('  ')
          .trimEnd() + '\n',
    )
    .join('');
}

/** runs an action, turning failures into a message on stderr and exit code 1 (never a stack) */
function action<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (err) {
      const message =
        err instanceof UsageError || hasCode(err, ErrorCodes.SCHEMA)
          ? err.message
          : `database error: ${err instanceof Error ? err.message : String(err)}`;
      process.stderr.write(`gatehouse: ${message}\n`);
      process.exitCode = 1;
    }
  };
}

export function registerKeyCommands(program: Command, deps: KeyCliDeps): void {
  program
    .command('migrate')
    .description('create or upgrade the database schema (also done at start)')
    .addOption(deps.configOption())
    .action(
      action(async (opts: { config?: string }) => {
        const config = await deps.load(opts);
        const repo = await openKeyRepository(config.database);
        try {
          process.stdout.write(migrationSummary(repo.kind, await repo.runMigrations()) + '\n');
        } finally {
          await repo.close();
        }
      }),
    );

  const keys = new Command('keys').description('manage API keys');

  keys
    .command('create')
    .description('create a key and print it (the only time it is shown)')
    .requiredOption('--name <name>', 'who the key is for')
    .requiredOption('--tier <tier>', 'rate-limit tier')
    .option('--roles <roles>', 'comma-separated role names')
    .option('--expires <duration>', 'lifetime, e.g. 90d (default: no expiry)')
    .addOption(deps.configOption())
    .action(
      action(
        async (opts: { name: string; tier: string; roles?: string; expires?: string; config?: string }) => {
          const config = await deps.load(opts);
          const secret = secretOf(config);
          const roles = (opts.roles ?? '')
            .split(',')
            .map((r) => r.trim())
            .filter((r) => r !== '');
          const fields = usage(() => checkNewKey({ name: opts.name, tier: opts.tier, roles }, config));
          const lifetimeMs =
            opts.expires === undefined
              ? undefined
              : usage(
                  () => checkLifetime(opts.expires),
                  () => '--expires',
                );
          await withRepository(config, async (repo) => {
            // the expiry counts from the database's clock, not this machine's
            const { key, record } = await createKey(repo, secret, {
              ...fields,
              ...(lifetimeMs === undefined ? {} : { lifetimeMs }),
            });
            process.stdout.write(key + '\n');
            process.stderr.write(
              `created key ${record.id} (name ${record.name}, tier ${record.tier}, roles ${record.roles.join(',') || '-'}, ` +
                `expires ${record.expiresAt ?? 'never'}); the key above is shown only once\n`,
            );
          });
        },
      ),
    );

  keys
    .command('list')
    .description('list keys (never the keys themselves)')
    .option('--json', 'one JSON array')
    .addOption(deps.configOption())
    .action(
      action(async (opts: { json?: boolean; config?: string }) => {
        const config = await deps.load(opts);
        await withRepository(config, async (repo) => {
          const all = await repo.list();
          if (opts.json) {
            process.stdout.write(JSON.stringify(all.map(viewOf), null, 2) + '\n');
            return;
          }
          const now = (await repo.now()).getTime();
          const rows = [['ID', 'NAME', 'TIER', 'ROLES', 'CREATED', 'EXPIRES', 'LAST USED', 'STATUS']];
          for (const k of all) {
            rows.push([
              k.id,
              k.name,
              k.tier,
              k.roles.join(',') || '-',
              k.createdAt.toISOString(),
              k.expiresAt?.toISOString() ?? '-',
              k.lastUsedAt?.toISOString() ?? '-',
              status(k, now),
            ]);
          }
          process.stdout.write(table(rows));
        });
      }),
    );

  keys
    .command('revoke')
    .description('revoke a key now (every instance refuses it within 1 s)')
    .argument('<id>', 'the key id (the part after gh_)')
    .addOption(deps.configOption())
    .action(
      action(async (id: string, opts: { config?: string }) => {
        const config = await deps.load(opts);
        if (!ID_PATTERN.test(id)) throw new UsageError(`no key ${JSON.stringify(id.slice(0, 20))}`);
        await withRepository(config, async (repo) => {
          const revoked = await repo.revoke(id);
          if (revoked === null) throw new UsageError(`no key ${id}`);
          process.stdout.write(`revoked ${id}\n`);
        });
      }),
    );

  keys
    .command('rotate')
    .description('issue a new key with the same name, tier and roles; the old one stays valid for --grace')
    .argument('<id>', 'the key id')
    .option('--grace <duration>', 'how long the old key stays valid (0: revoked at once)', '24h')
    .addOption(deps.configOption())
    .action(
      action(async (id: string, opts: { grace: string; config?: string }) => {
        const config = await deps.load(opts);
        const secret = secretOf(config);
        const grace = usage(
          () => checkLifetime(opts.grace),
          () => '--grace',
        );
        if (!ID_PATTERN.test(id)) throw new UsageError(`no key ${JSON.stringify(id.slice(0, 20))}`);
        await withRepository(config, async (repo) => {
          const rotated = await rotateKey(repo, secret, id, grace);
          if (rotated.kind === 'not_found') throw new UsageError(`no key ${id}`);
          if (rotated.kind === 'refused') throw new UsageError(rotated.message);
          process.stdout.write(rotated.key + '\n');
          const old =
            grace === 0 ? 'which is revoked now' : `which stays valid until ${rotated.previous.revokedAt}`;
          process.stderr.write(
            `new key ${rotated.record.id} replaces ${id}, ${old}; the key above is shown only once\n`,
          );
        });
      }),
    );

  program.addCommand(keys);
}
