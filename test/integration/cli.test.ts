/** `gatehouse validate` and `gatehouse schema`, run as real processes. */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { writeTempConfig } from '../helpers/process.js';
import { describe, expect, it } from 'vitest';
import { loadConfigFile } from '../../src/config/load.js';
import { formatProblem } from '../../src/config/problems.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const GOOD = 'test/fixtures/config/good.yaml';
const BAD = 'test/fixtures/config/bad.yaml';

type Run = { code: number | null; stdout: string; stderr: string };

/**
 * Runs the built CLI (`bin/gatehouse.js`; `npm test` builds before the suite), as process.test.ts
 * does: compiling the sources with tsx in every child took seconds per run on a loaded machine.
 * The environment is the test's, without what would change the result.
 */
function gatehouse(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  const base = { ...process.env };
  for (const name of ['PORT', 'LOG_LEVEL', 'GATEHOUSE_CONFIG']) delete base[name];
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ['bin/gatehouse.js', ...args],
      // the timeout only stops a hung child; nothing asserts on time
      { cwd: root, env: { ...base, ...env }, timeout: 30_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : null) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

describe.concurrent('gatehouse validate', () => {
  it('exits 0 for a valid file and says so', async () => {
    const run = await gatehouse(['validate', '-c', GOOD]);
    expect(run).toEqual({ code: 0, stdout: `${GOOD}: ok\n`, stderr: '' });
  });

  it('exits 1 and prints every problem as file:line:column: path: message', async () => {
    const run = await gatehouse(['validate', '-c', BAD]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    const printed = run.stderr.trimEnd().split('\n');
    const loaded = await loadConfigFile(BAD, { env: {} });
    expect(loaded.ok).toBe(false);
    expect(printed).toEqual(loaded.ok ? [] : loaded.problems.map(formatProblem));
    expect(printed.length).toBeGreaterThanOrEqual(20);
    for (const line of printed)
      expect(line).toMatch(/^test\/fixtures\/config\/bad\.yaml:\d+:\d+: [^:]+: \S.*$/);
    expect(printed).toContain(
      `${BAD}:2:40: listen.quic: unknown key (expected one of: host, port, tls, http2, plain)`,
    );
    expect(printed).toContain(
      `${BAD}:29:5: routes[1].service: names an unknown service "order" (expected one of: orders, empty, bad name, _hidden)`,
    );
  });

  it('exits 1 with a clear message when the file does not exist', async () => {
    const run = await gatehouse(['validate', '-c', 'no/such/gatehouse.yaml']);
    expect(run).toEqual({
      code: 1,
      stdout: '',
      stderr: 'no/such/gatehouse.yaml: cannot read the config file: no such file\n',
    });
  });

  it('exits 1 when a JWT public key file is missing, naming the field and the file', async () => {
    const file = writeTempConfig(`services: { s: { targets: ["http://127.0.0.1:1"] } }
routes: [{ name: r, match: { path: /x }, service: s, auth: [jwt] }]
auth: { jwt: { publicKeys: [keys/not-deployed.pem] } }
`);
    const run = await gatehouse(['validate', '-c', file]);
    expect(run).toEqual({
      code: 1,
      stdout: '',
      stderr: `${file}:3:29: auth.jwt.publicKeys[0]: cannot read "keys/not-deployed.pem": no such file\n`,
    });
  });

  it('reads the file named by GATEHOUSE_CONFIG when -c is absent', async () => {
    const run = await gatehouse(['validate'], { GATEHOUSE_CONFIG: BAD });
    expect(run.code).toBe(1);
    expect(run.stderr.split('\n')[0]).toBe(
      `${BAD}:2:40: listen.quic: unknown key (expected one of: host, port, tls, http2, plain)`,
    );
  });
});

describe('the example configs', () => {
  it('gatehouse validate accepts examples/production.yaml with its environment', async () => {
    const file = 'examples/production.yaml';
    const env = {
      GATEHOUSE_ADMIN_TOKEN: 'admin-token-0123456789',
      GATEHOUSE_KEY_SECRET: 'key-secret-0123456789abcdef',
      DATABASE_URL: 'postgres://gatehouse@db.internal:5432/gatehouse',
      REDIS_URL: 'redis://redis.internal:6379',
      ES_API_KEY: 'aWQ6a2V5',
    };
    expect(await gatehouse(['validate', '-c', file], env)).toEqual({
      code: 0,
      stdout: `${file}: ok\n`,
      stderr: '',
    });
  });

  it('gatehouse demo --help names the demo config as the default, not ./gatehouse.yaml', async () => {
    // commander wraps help lines at the terminal's width
    const help = async (command: string) => {
      const run = await gatehouse([command, '--help']);
      expect(run.code).toBe(0);
      return run.stdout.replace(/\s+/g, ' ');
    };
    const demo = await help('demo');
    expect(demo).toContain('-c, --config <file> config file (default: the bundled examples/demo.yaml)');
    expect(demo).not.toContain('GATEHOUSE_CONFIG');
    expect(demo).not.toContain('./gatehouse.yaml');
    expect(await help('start')).toContain('(default: $GATEHOUSE_CONFIG, then ./gatehouse.yaml)');
  });
});

describe('gatehouse schema', () => {
  it('prints the JSON Schema of the config file', async () => {
    const run = await gatehouse(['schema']);
    expect(run.code).toBe(0);
    expect(run.stderr).toBe('');
    const schema = JSON.parse(run.stdout) as {
      $schema: string;
      type: string;
      additionalProperties: boolean;
      properties: Record<string, { type?: string; additionalProperties?: boolean }>;
    };
    expect(schema.$schema).toMatch(/json-schema\.org/);
    expect(schema.type).toBe('object');
    expect(schema.additionalProperties).toBe(false);
    for (const key of ['listen', 'admin', 'services', 'routes'])
      expect(schema.properties).toHaveProperty(key);
    expect(schema.properties.listen?.additionalProperties).toBe(false);
    expect(schema.properties.routes?.type).toBe('array');
  });
});
