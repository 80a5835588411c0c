/**
 * The version and commit `GET /status` reports: the version from package.json, the commit from
 * `build-info.json` beside it when the build that packaged this copy wrote one
 * (`{"commit": "<sha>"}`, e.g. a container build), else null. Read once, at first use.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

let cached: { version: string; commit: string | null } | undefined;

function readJson(file: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(readFileSync(join(packageRoot, file), 'utf8')) as unknown;
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

export function buildInfo(): { version: string; commit: string | null } {
  if (cached === undefined) {
    const pkg = readJson('package.json');
    const build = readJson('build-info.json');
    const commit = build?.commit;
    cached = {
      version: typeof pkg?.version === 'string' ? pkg.version : 'unknown',
      commit: typeof commit === 'string' && /^[0-9a-f]{7,64}$/.test(commit) ? commit : null,
    };
  }
  return cached;
}
