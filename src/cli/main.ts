/** The `gatehouse` command line. */
import cluster from 'node:cluster';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, Option } from 'commander';
import { loadConfigFile } from '../config/load.js';
import { formatProblem } from '../config/problems.js';
import { jsonSchema, type GatewayConfig } from '../config/schema.js';
import { registerKeyCommands } from './keys.js';
import { startupMark } from '../observability/startup-timing.js';

const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

function configPath(option: string | undefined): string {
  return option || process.env.GATEHOUSE_CONFIG || './gatehouse.yaml';
}

const configOption = () =>
  new Option('-c, --config <file>', 'config file (default: $GATEHOUSE_CONFIG, then ./gatehouse.yaml)');

async function loadOrExit(file: string): Promise<GatewayConfig> {
  const result = await loadConfigFile(file);
  if (!result.ok) {
    for (const p of result.problems) process.stderr.write(formatProblem(p) + '\n');
    process.exit(1);
  }
  return result.config;
}

/**
 * A cluster worker: runs on the config its primary hands it (never the file: every worker must
 * run the same config), driven by the primary (cluster-worker.ts).
 */
async function runAsWorker(): Promise<void> {
  const { runWorker } = await import('../server/cluster-worker.js');
  await runWorker();
}

/** Runs the gateway in this process until SIGTERM/SIGINT, or as the primary of `workers`. */
async function run(
  config: GatewayConfig,
  configFile: string,
  onStopped?: () => Promise<void>,
): Promise<void> {
  // loaded here so that `validate` and `schema` stay quick
  const { createLogger } = await import('../observability/logger.js');
  const { Primary, workerCount } = await import('../server/cluster.js');
  const { Gateway } = await import('../server/gateway.js');
  const { watchConfigFile } = await import('../server/config-watch.js');
  startupMark('gateway modules loaded');
  const logger = createLogger(config.logging.level);
  const count = workerCount(config.workers);
  if (count > 1) {
    // the primary installs its signal handlers before it forks (Primary.run)
    const primary = new Primary({ config, configFile, count, logger });
    const stopped = primary.run();
    // configWatch with workers: the primary watches, and reloads them all as SIGHUP does
    const watcher = config.configWatch
      ? watchConfigFile(configFile, { logger, reload: () => primary.reload('watch') })
      : null;
    const code = await stopped;
    watcher?.close();
    await onStopped?.();
    process.exit(code);
  }
  // Signal handlers go in before the gateway starts: without a listener a SIGHUP (or SIGTERM)
  // takes the default action and kills the process, and one sent right after "gatehouse ready"
  // could arrive before handlers installed after start. Signals seen while starting wait for it.
  let gateway: Awaited<ReturnType<typeof Gateway.start>> | null = null;
  let stopping: string | null = null;
  let stopped = false;
  let reloadPending = false;
  // once: a repeated SIGTERM (a supervisor that insists, the whole process group signalled)
  // changes nothing; the handlers stay, so it does not take the default action either
  const stop = (signal: string) => {
    stopping ??= signal;
    if (gateway === null || stopped) return;
    stopped = true;
    logger.info({ signal: stopping }, 'shutting down');
    void gateway.shutdown().then(async () => {
      await onStopped?.();
      process.exit(0);
    });
  };
  // the outcome is logged and counted by the gateway; a failed reload keeps the running config
  const reload = () => {
    if (gateway === null) reloadPending = true;
    else void gateway.reload('SIGHUP');
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGHUP', reload);
  try {
    gateway = await Gateway.start(config, { logger, configFile, watchConfig: true });
  } catch (err) {
    logger.fatal({ err }, 'could not start');
    process.exit(1);
  }
  if (stopping !== null) stop(stopping);
  else if (reloadPending) reload();
}

export function buildCli(): Command {
  const program = new Command('gatehouse').description('Gatehouse API gateway').showHelpAfterError();

  program
    .command('start')
    .description('run the gateway')
    .addOption(configOption())
    .action(async (opts: { config?: string }) => {
      if (cluster.isWorker) return runAsWorker();
      const file = configPath(opts.config);
      const config = await loadOrExit(file);
      startupMark('config loaded');
      await run(config, file);
    });

  program
    .command('validate')
    .description('check a config file; prints every problem as file:line:column: path: message')
    .addOption(configOption())
    .action(async (opts: { config?: string }) => {
      // Problems go to stderr, one `file:line:column: path: message` line each (`file: message` when
      // the file cannot be read); exit code 1. Valid: `file: ok` on stdout, exit code 0.
      // exitCode rather than exit(): the output is flushed before the process ends.
      const file = configPath(opts.config);
      const result = await loadConfigFile(file);
      if (!result.ok) {
        process.stderr.write(result.problems.map((p) => formatProblem(p) + '\n').join(''));
        process.exitCode = 1;
        return;
      }
      process.stdout.write(`${file}: ok\n`);
    });

  program
    .command('schema')
    .description("print the config file's JSON Schema")
    .action(() => {
      process.stdout.write(JSON.stringify(jsonSchema(), null, 2) + '\n');
    });

  program
    .command('demo')
    .description('run the demo upstreams (127.0.0.1:3001, :3002) and the gateway with examples/demo.yaml')
    // not configOption(): the demo ignores GATEHOUSE_CONFIG and ./gatehouse.yaml
    .addOption(new Option('-c, --config <file>', 'config file (default: the bundled examples/demo.yaml)'))
    .action(async (opts: { config?: string }) => {
      if (cluster.isWorker) return runAsWorker();
      const { startDemoUpstreams } = await import('../demo/upstream.js');
      const file = opts.config ?? join(packageRoot, 'examples', 'demo.yaml');
      const config = await loadOrExit(file);
      const upstreams = await startDemoUpstreams([3001, 3002]);
      process.stderr.write(
        `gatehouse demo: proxy on http://localhost:${config.listen.port}, admin on http://localhost:${config.admin.port}\n` +
          `  try: curl -i localhost:${config.listen.port}/api/items/1\n`,
      );
      await run(config, file, async () => {
        await Promise.all(upstreams.map((s) => new Promise((r) => s.close(r))));
      });
    });

  registerKeyCommands(program, { configOption, load: (opts) => loadOrExit(configPath(opts.config)) });

  program
    .command('version')
    .description('print the version')
    .action(async () => {
      const pkg = JSON.parse(await readFile(join(packageRoot, 'package.json'), 'utf8')) as {
        version: string;
      };
      process.stdout.write(pkg.version + '\n');
    });
  return program;
}

export async function main(argv: readonly string[] = process.argv): Promise<void> {
  startupMark('CLI loaded');
  await buildCli().parseAsync([...argv]);
}

if (
  process.argv[1] &&
  existsSync(process.argv[1]) &&
  resolve(process.argv[1]) === fileURLToPath(import.meta.url)
) {
  void main();
}
