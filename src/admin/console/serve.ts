/**
 * Serves the admin web console at `/ui` (when `admin.ui` is on). The files are static and carry
 * no secret: the page asks for an admin token and sends it as a bearer header to the API of this
 * port, as any client does. No cookie is ever set, so a page of another origin cannot act with
 * the operator's credentials (no CSRF), and the Content-Security-Policy allows only this origin's
 * own scripts and styles, no inline code, no framing.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { problem } from '../../problems/registry.js';
import { writeProblem } from '../../problems/write.js';
import { loadConsoleAssets, type ConsoleAssets } from './assets.js';

export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "font-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy': CONSOLE_CSP,
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

/** `/ui`, or a path under `/ui/`: the console's, whether it is on or not */
export const isConsolePath = (path: string): boolean => path === '/ui' || path.startsWith('/ui/');

export type ConsoleServer = {
  /** answers a request for a console path; `enabled` is `admin.ui` of the running config */
  serve(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    enabled: boolean,
    requestId: string,
  ): Promise<void>;
};

export function consoleServer(load: () => Promise<ConsoleAssets> = loadConsoleAssets): ConsoleServer {
  // read once, when first enabled; a failed read (no build) is retried on the next request
  let assets: Promise<ConsoleAssets> | null = null;
  const get = (): Promise<ConsoleAssets> => {
    assets ??= load().catch((err: unknown) => {
      assets = null;
      throw err;
    });
    return assets;
  };
  return {
    async serve(req, res, path, enabled, requestId) {
      if (!enabled)
        return writeProblem(
          res,
          problem('not_found', 'the console is off (admin.ui: false)'),
          requestId,
          false,
        );
      if (req.method !== 'GET' && req.method !== 'HEAD')
        return writeProblem(
          res,
          problem('method_not_allowed', `${req.method ?? ''} is not allowed here`, ['allow', 'GET, HEAD']),
          requestId,
          false,
        );
      let map: ConsoleAssets;
      try {
        map = await get();
      } catch {
        return writeProblem(
          res,
          problem('not_found', 'the console is not built (npm run build writes dist/console)'),
          requestId,
          false,
        );
      }
      const asset = map.get(path);
      if (asset === undefined)
        return writeProblem(res, problem('not_found', `no console file ${path}`), requestId, false);
      const headers: Record<string, string | number> = {
        ...SECURITY_HEADERS,
        'content-type': asset.contentType,
        'cache-control': asset.cacheControl,
        etag: asset.etag,
      };
      if (req.headers['if-none-match'] === asset.etag) {
        res.writeHead(304, headers);
        res.end();
        return;
      }
      headers['content-length'] = asset.body.length;
      res.writeHead(200, headers);
      res.end(req.method === 'HEAD' ? undefined : asset.body);
    },
  };
}
