/**
 * The admin web console's files (built from ui/ into dist/console by `npm run build`), read once
 * into a fixed map: a request is looked up by its exact path, never joined onto a directory, so
 * no request target can name a file outside the map.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { extname } from 'node:path';

export type ConsoleAsset = {
  readonly body: Buffer;
  readonly contentType: string;
  readonly etag: string;
  readonly cacheControl: string;
};

/** path (`/ui/app-4F2K.js`) → asset; `/ui` and `/ui/` are the page */
export type ConsoleAssets = ReadonlyMap<string, ConsoleAsset>;

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

/** where the build writes the console: dist/console, from src/admin/console or dist/admin/console */
export const CONSOLE_DIR = new URL('../../../dist/console/', import.meta.url);

/**
 * Reads every file of the console's build. The bundles' names carry their content hash, so they
 * are cached for good; the page itself is revalidated, so a new build is seen at once.
 */
export async function loadConsoleAssets(dir: URL = CONSOLE_DIR): Promise<ConsoleAssets> {
  const map = new Map<string, ConsoleAsset>();
  const names = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
  for (const name of names) {
    const contentType = TYPES[extname(name)];
    // a source map or anything else the build left there is not served
    if (contentType === undefined) continue;
    const body = await readFile(new URL(name, dir));
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
    const page = name === 'index.html';
    const asset = {
      body,
      contentType,
      etag,
      cacheControl: page ? 'no-cache' : 'public, max-age=31536000, immutable',
    };
    if (page) {
      map.set('/ui', asset);
      map.set('/ui/', asset);
    } else map.set(`/ui/${name}`, asset);
  }
  if (!map.has('/ui')) throw new Error(`no index.html in ${dir.pathname}`);
  return map;
}
