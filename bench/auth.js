#!/usr/bin/env node
// Cost of authentication, in one run: Gatehouse with no auth, with a JWT (the same token every
// time: the verified-token cache answers), with JWTs that are all different (12 000 tokens cycled,
// more than the 10 000-entry cache: every request pays an RS256 verify), and with an API key
// (SQLite store; the key cache answers after the first request).
//
//   node bench/auth.js        Env: BENCH_RUNS (3), BENCH_DURATION (10s), BENCH_WARMUP (3s)
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startGatehouse } from './lib/gatehouse.js';
import { KEEP_ALIVE, measure } from './lib/measure.js';
import { startNginx, UPSTREAM_BODY } from './lib/nginx.js';
import { installCleanupHooks, makeTempDir, pinSelf } from './lib/proc.js';
import { createApiKey, jwtFixture, withApiKey, withJwt } from './lib/stages.js';
import { markdownTable } from './lib/report.js';

const REPO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const runs = Number(process.env.BENCH_RUNS ?? 3);
const duration = process.env.BENCH_DURATION ?? '10s';
const warmup = process.env.BENCH_WARMUP ?? '3s';
const TOKENS = 12_000;

async function main() {
  installCleanupHooks();
  const [loadCpu, sutCpu] = os.availableParallelism() >= 2 ? [0, 1] : [null, null];
  if (loadCpu !== null) pinSelf(loadCpu);
  const dir = makeTempDir('gatehouse-bench-auth-');

  const jwt = jwtFixture(dir);
  const token = (/** @type {number} */ i) => jwt.token(i);
  console.log(`signing ${TOKENS} RS256 tokens...`);
  const tokensFile = path.join(dir, 'tokens.txt');
  writeFileSync(tokensFile, Array.from({ length: TOKENS }, (_, i) => token(i)).join('\n') + '\n');
  const luaFile = path.join(dir, 'tokens.lua');
  writeFileSync(
    luaFile,
    `local tokens = {}\nfor line in io.lines("${tokensFile}") do tokens[#tokens + 1] = line end\n` +
      `local i = 0\nrequest = function()\n  i = i + 1\n  if i > #tokens then i = 1 end\n` +
      `  return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. tokens[i] })\nend\n`,
  );

  // an API key in the SQLite store, through the CLI
  const apiKeyStore = createApiKey({ repoDir: REPO_DIR, dir });
  const apiKey = apiKeyStore.key;
  /** @param {Record<string, unknown>} c @param {'jwt' | 'apiKey'} method */
  const withAuth = (c, method) => (method === 'jwt' ? withJwt(c, jwt) : withApiKey(c, apiKeyStore));

  const upstream = await startNginx({ name: 'upstream', body: UPSTREAM_BODY, cpu: loadCpu });
  /** @type {Array<{ name: string, configure: (c: Record<string, unknown>) => Record<string, unknown>, headers?: Record<string, string>, script?: string }>} */
  const variants = [
    { name: 'no auth', configure: (c) => c },
    {
      name: 'jwt (cached)',
      configure: (c) => withAuth(c, 'jwt'),
      headers: { Authorization: `Bearer ${token(0)}` },
    },
    { name: `jwt (cold, ${TOKENS} tokens)`, configure: (c) => withAuth(c, 'jwt'), script: luaFile },
    { name: 'api key', configure: (c) => withAuth(c, 'apiKey'), headers: { 'x-api-key': apiKey } },
  ];
  const results = [];
  for (const v of variants) {
    results.push(
      await measure({
        name: v.name,
        modes: [KEEP_ALIVE],
        runs,
        duration,
        warmup,
        wrkCpu: loadCpu,
        ...(v.headers ? { headers: v.headers } : {}),
        ...(v.script ? { script: v.script } : {}),
        start: () =>
          startGatehouse({
            repoDir: REPO_DIR,
            upstreamUrl: upstream.url,
            cpu: sutCpu,
            configure: v.configure,
          }),
      }),
    );
  }
  await upstream.stop();
  console.log(`\n${markdownTable(results, { baseline: 'no auth' })}\n`);
}

main().catch((err) => {
  console.error(`bench: ${err instanceof Error ? (err.stack ?? err.message) : err}`);
  process.exit(1);
});
