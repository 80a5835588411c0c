/**
 * The configs users copy: examples/production.yaml and the complete file in docs/configuration.md
 * must validate, and the complete file must show every option `gatehouse schema` knows.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadConfigFile, loadConfigText, type LoadResult } from '../../src/config/load.js';
import { formatProblem } from '../../src/config/problems.js';
import { jsonSchema } from '../../src/config/schema.js';
import { effectiveRateLimit } from '../../src/ratelimit/limiter.js';

const repoFile = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url));
const lines = (result: LoadResult) => (result.ok ? ['(ok)'] : result.problems.map(formatProblem));

const PRODUCTION = repoFile('examples/production.yaml');

/** the variables the header comment of examples/production.yaml lists (`#   NAME  what it is`) */
function documentedVariables(text: string): string[] {
  return [...text.matchAll(/^# {3}([A-Z][A-Z0-9_]*) {2,}\S/gm)].map((m) => m[1]!);
}

const productionEnv = {
  GATEHOUSE_ADMIN_TOKEN: 'admin-token-0123456789',
  GATEHOUSE_KEY_SECRET: 'key-secret-0123456789abcdef',
  DATABASE_URL: 'postgres://gatehouse:secret@db.internal:5432/gatehouse',
  REDIS_URL: 'redis://:secret@redis.internal:6379/0',
  ES_API_KEY: 'aWQ6a2V5',
};

describe('examples/production.yaml', () => {
  it('validates with its environment set', async () => {
    const result = await loadConfigFile(PRODUCTION, { env: productionEnv });
    expect(lines(result)).toEqual(['(ok)']);
    if (!result.ok) return;
    const { config } = result;
    // what the comments promise
    expect(config.database.url).toBe(productionEnv.DATABASE_URL);
    expect(config.redis?.url).toBe(productionEnv.REDIS_URL);
    expect(config.admin.token).toBe(productionEnv.GATEHOUSE_ADMIN_TOKEN);
    expect(config.auth?.jwt?.jwksUrl).toMatch(/^https:\/\//);
    expect(config.rateLimit.unauthenticated).toBeDefined();
    expect(Object.values(config.services).some((s) => s.discovery !== undefined)).toBe(true);
    expect(Object.values(config.services).some((s) => s.healthCheck !== undefined)).toBe(true);
    expect(config.logging.access.elasticsearch?.apiKey).toBe(productionEnv.ES_API_KEY);
    expect(config.tracing?.otlpUrl).toBeDefined();
    expect(config.trustedProxies.length).toBeGreaterThan(0);
    // "rateLimit is left out: on a route with auth it is tier"
    const orders = config.routes.find((r) => r.name === 'orders-read')!;
    expect(orders.rateLimit).toBeUndefined();
    expect(effectiveRateLimit(orders, config)).toBe('tier');
  });

  it('takes every secret from the environment: the variables its header lists, no more, no fewer', async () => {
    const text = readFileSync(PRODUCTION, 'utf8');
    const documented = documentedVariables(text);
    expect(documented.sort()).toEqual(Object.keys(productionEnv).sort());
    const result = await loadConfigFile(PRODUCTION, { env: {} });
    const unset = new Set(
      lines(result).flatMap((line) => /environment variable (\w+) is not set/.exec(line)?.[1] ?? []),
    );
    expect([...unset].sort()).toEqual(documented.sort());
  });
});

/** the first ```yaml block after the heading "## A complete file" */
function completeFile(): string {
  const doc = readFileSync(repoFile('docs/configuration.md'), 'utf8');
  const section = doc.indexOf('\n## A complete file\n');
  expect(section).toBeGreaterThan(0);
  const block = /```yaml\n([\s\S]*?)```/.exec(doc.slice(section));
  return block![1]!;
}

type SchemaNode = {
  properties?: Record<string, SchemaNode>;
  patternProperties?: Record<string, SchemaNode>;
  additionalProperties?: SchemaNode | boolean;
  items?: SchemaNode;
  anyOf?: SchemaNode[];
};

/**
 * Paths of the schema's options that no value in `values` sets. Maps of names (services, tiers,
 * roles) and lists (routes, limits) count as covered when any of their entries sets the option.
 */
function uncovered(node: SchemaNode, values: unknown[], path: string): string[] {
  const objects = values.filter((v): v is Record<string, unknown> => typeof v === 'object' && v !== null);
  const missing: string[] = [];
  for (const [key, child] of Object.entries(node.properties ?? {})) {
    const present = objects.filter((o) => Object.hasOwn(o, key)).map((o) => o[key]);
    if (present.length === 0) missing.push(`${path}${key}`);
    else missing.push(...uncovered(child, present, `${path}${key}.`));
  }
  const entries = [
    ...Object.values(node.patternProperties ?? {}),
    ...(typeof node.additionalProperties === 'object' ? [node.additionalProperties] : []),
  ];
  for (const child of entries) {
    missing.push(...uncovered(child, objects.flatMap(Object.values), `${path}<name>.`));
  }
  if (node.items) missing.push(...uncovered(node.items, values.flat(), `${path}[].`));
  for (const alternative of node.anyOf ?? []) missing.push(...uncovered(alternative, values, path));
  return missing;
}

describe('the complete file in docs/configuration.md', () => {
  it('validates', () => {
    const env = { GATEHOUSE_KEY_SECRET: 'key-secret-0123456789abcdef' };
    expect(lines(loadConfigText(completeFile(), 'gatehouse.yaml', { env }))).toEqual(['(ok)']);
  });

  it('shows every option of `gatehouse schema`; the exclusive alternatives in comments', () => {
    const text = completeFile();
    const missing = uncovered(jsonSchema() as SchemaNode, [parse(text)], '');
    // one of each pair can be set; the other is shown in a comment on the line
    const inComments = [
      'redis.cluster',
      'auth.jwt.publicKeys',
      'database.url',
      'logging.access.elasticsearch.apiKey',
    ];
    expect(missing.sort()).toEqual(inComments.sort());
    const comments = text
      .split('\n')
      .map((line) => /#(.*)$/.exec(line)?.[1] ?? '')
      .join('\n');
    for (const path of inComments) expect(comments).toContain(`${path.split('.').pop()!}:`);
  });
});
