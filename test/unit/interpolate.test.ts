import { describe, expect, it } from 'vitest';
import { interpolate } from '../../src/config/interpolate.js';
import { loadConfigText, type LoadResult } from '../../src/config/load.js';
import { formatProblem } from '../../src/config/problems.js';
import type { GatewayConfig } from '../../src/config/schema.js';

function load(yaml: string, env: NodeJS.ProcessEnv = {}): GatewayConfig {
  const result = loadConfigText(yaml, 'gw.yaml', { env });
  if (!result.ok) throw new Error(result.problems.map(formatProblem).join('\n'));
  return result.config;
}

const lines = (result: LoadResult) => (result.ok ? [] : result.problems.map(formatProblem));

describe('interpolate (one string)', () => {
  it('replaces ${VAR} from the environment', () => {
    expect(interpolate('a-${X}-b', { X: 'x' })).toEqual({ value: 'a-x-b', missing: [], invalid: [] });
  });

  it('uses the default when the variable is unset or empty, not when it is set', () => {
    expect(interpolate('${X:-dflt}', {}).value).toBe('dflt');
    expect(interpolate('${X:-dflt}', { X: '' }).value).toBe('dflt');
    expect(interpolate('${X:-dflt}', { X: 'set' }).value).toBe('set');
    expect(interpolate('${X:-}', {}).value).toBe('');
    expect(interpolate('${X:-a b:c}', {}).value).toBe('a b:c');
  });

  it('reports an unset variable without a default; set but empty is just empty', () => {
    expect(interpolate('${NOPE}', {})).toEqual({ value: '', missing: ['NOPE'], invalid: [] });
    expect(interpolate('${E}', { E: '' })).toEqual({ value: '', missing: [], invalid: [] });
  });

  it('turns $${ into a literal ${', () => {
    expect(interpolate('$${X} and $${Y:-z}', { X: 'no' }).value).toBe('${X} and ${Y:-z}');
  });

  it('reports malformed references instead of keeping them silently', () => {
    for (const bad of ['${}', '${1X}', '${X:y}', '${X-y}', '${X', '${ X }']) {
      const result = interpolate(`a ${bad} b`, {});
      expect(result.invalid, bad).toHaveLength(1);
    }
  });

  it("keeps the gateway's per-request placeholders as written (a prefix and a dot: never a variable)", () => {
    const text =
      '${consumer.id} ${jwt.claim.team} ${header.x-a} ${request.path}${request.query} ${route.name}';
    expect(interpolate(text, { consumer: 'no' })).toEqual({ value: text, missing: [], invalid: [] });
    expect(interpolate('${other.x}', {}).invalid).toHaveLength(1);
  });

  it('does not expand a value a second time', () => {
    expect(interpolate('${A}', { A: '${B}', B: 'no' }).value).toBe('${B}');
  });

  it('keeps a U+E000 of the input (the placeholder marker) as it is', () => {
    expect(interpolate('\uE0000\uE001 ${X}', { X: 'x' }).value).toBe('\uE0000\uE001 x');
  });
});

describe('interpolation in a config file', () => {
  it('expands values anywhere, including inside flow mappings', () => {
    const config = load('admin: { token: ${TOKEN:-} }\nlisten: { host: "${HOST}" }\n', {
      HOST: '127.0.0.2',
    });
    expect(config.admin.token).toBe('');
    expect(config.listen.host).toBe('127.0.0.2');
    expect(load('admin: { token: ${TOKEN:-} }\n', { TOKEN: 's3cret' }).admin.token).toBe('s3cret');
  });

  it('types a plain ${VAR} as YAML would (a number where the schema wants one); a quoted one stays a string', () => {
    expect(load('listen: { port: ${P:-8081} }\n').listen.port).toBe(8081);
    expect(load('listen:\n  port: ${P}\n', { P: '9000' }).listen.port).toBe(9000);
    const quoted = loadConfigText('listen: { port: "${P:-8081}" }\n', 'gw.yaml', { env: {} });
    expect(lines(quoted)).toEqual([
      'gw.yaml:1:11: listen.port: must be a port number from 0 to 65535 (0 = any free port)',
    ]);
  });

  it('cannot inject YAML structure: the value stays one string', () => {
    const evil = 'x\n  evil: 1';
    expect(load('admin: { token: ${T} }\n', { T: evil }).admin.token).toBe(evil);
    expect(load('admin:\n  token: ${T}\n', { T: evil }).admin.token).toBe(evil);
    expect(load('admin: { token: ${T} }\n', { T: '}' }).admin.token).toBe('}');
    expect(load('admin: { token: ${T} }\n', { T: '{ a: 1 }' }).admin.token).toBe('{ a: 1 }');
    expect(load('admin: { token: "${T}" }\n', { T: '"; x: "' }).admin.token).toBe('"; x: "');
    // a value that YAML would read as null or a list stays the string it is
    expect(load('admin: { token: ${T} }\n', { T: 'null' }).admin.token).toBe('null');
    expect(load('admin: { token: ${T} }\n', { T: '[1, 2]' }).admin.token).toBe('[1, 2]');
  });

  it('reports a missing variable with file, line and path', () => {
    const result = loadConfigText(
      '# comment ${IGNORED}\nlisten:\n  host: 127.0.0.1\n  port: ${NOPE}\n',
      'gw.yaml',
      {
        env: {},
      },
    );
    expect(lines(result)).toEqual([
      'gw.yaml:4:9: listen.port: environment variable NOPE is not set (use ${NOPE:-default} for a default)',
    ]);
  });

  it('reports a malformed reference with its line', () => {
    const result = loadConfigText('admin:\n  token: "a${1X}"\n', 'gw.yaml', { env: {} });
    expect(lines(result)).toEqual([
      'gw.yaml:2:10: admin.token: invalid interpolation "${1X}" (use ${VAR}, ${VAR:-default}, or $${ for "${")',
    ]);
  });

  it('keeps $${ literal in the file', () => {
    expect(load('admin: { token: "a$${B}" }\n', { B: 'no' }).admin.token).toBe('a${B}');
  });

  it('keeps line numbers exact after a long default', () => {
    const yaml = `admin: { token: "\${T:-${'x'.repeat(200)}}" }\nlisten: { port: nope }\n`;
    expect(lines(loadConfigText(yaml, 'gw.yaml', { env: {} }))).toEqual([
      'gw.yaml:2:11: listen.port: must be a port number from 0 to 65535 (0 = any free port)',
    ]);
  });
});

describe('environment overrides', () => {
  it('PORT overrides listen.port', () => {
    expect(load('listen: { port: 8080 }\n', { PORT: '3000' }).listen.port).toBe(3000);
    expect(load('', { PORT: '3001' }).listen.port).toBe(3001);
    expect(load('listen: { port: 8080 }\n', { PORT: '' }).listen.port).toBe(8080);
  });

  it('LOG_LEVEL overrides logging.level', () => {
    expect(load('logging: { level: info }\n', { LOG_LEVEL: 'debug' }).logging.level).toBe('debug');
    expect(load('', { LOG_LEVEL: 'warn' }).logging.level).toBe('warn');
  });

  it('says where a bad overridden value came from', () => {
    const result = loadConfigText('listen:\n  port: 8080\n', 'gw.yaml', {
      env: { PORT: 'http', LOG_LEVEL: 'loud' },
    });
    expect(lines(result)).toEqual([
      'gw.yaml:1:1: logging.level: must be one of: "fatal", "error", "warn", "info", "debug", "trace", "silent" (the value "loud" comes from LOG_LEVEL)',
      'gw.yaml:2:3: listen.port: must be a port number from 0 to 65535 (0 = any free port) (the value "http" comes from PORT)',
    ]);
  });

  it('does not hide a wrong section', () => {
    const result = loadConfigText('listen: 5\n', 'gw.yaml', { env: { PORT: '3000' } });
    expect(lines(result)).toEqual(['gw.yaml:1:1: listen: must be a mapping (key: value)']);
  });

  it('reads process.env when no env is given', () => {
    const name = `GATEHOUSE_TEST_${process.pid}`;
    process.env[name] = 'from-process';
    try {
      const result = loadConfigText(`admin: { token: \${${name}} }\n`, 'gw.yaml');
      expect(result.ok && result.config.admin.token).toBe('from-process');
    } finally {
      delete process.env[name];
    }
  });
});
