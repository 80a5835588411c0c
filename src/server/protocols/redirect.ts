/**
 * The cleartext listener's `redirect` mode: every request is answered with a redirect to the
 * same path over HTTPS (308 by default: the method and body are kept), nothing is proxied. The
 * Host is checked like on the proxy port; a request without a usable one gets a problem.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { problems } from '../../problems/registry.js';
import { writeProblem } from '../../problems/write.js';
import { isValidHost } from '../../router/host.js';
import { requestIdFor } from '../request-id.js';

export function createRedirectServer(
  status: number,
  /** the port of the HTTPS URL (the TLS listener's, once it listens) */
  httpsPort: () => number,
  limits: { headersTimeout: number; requestTimeout: number; keepAliveTimeout: number; maxHeaderSize: number },
): Server {
  const server = createServer(
    {
      headersTimeout: limits.headersTimeout,
      requestTimeout: limits.requestTimeout,
      keepAliveTimeout: limits.keepAliveTimeout,
      maxHeaderSize: limits.maxHeaderSize,
      requireHostHeader: false,
    },
    (req: IncomingMessage, res: ServerResponse) => {
      try {
        const host = req.headers.host;
        if (host === undefined || !isValidHost(host)) {
          writeProblem(
            res,
            problems.badRequest('a redirect to HTTPS needs a valid Host header'),
            requestIdFor(undefined),
            true,
          );
          return;
        }
        const url = req.url ?? '/';
        const port = httpsPort();
        const portSuffix = port === 443 ? '' : `:${port}`;
        const location = `https://${hostName(host)}${portSuffix}${url.startsWith('/') ? url : '/'}`;
        // the request body is not read: the connection closes rather than parse it as a request
        res.writeHead(status, {
          location,
          'content-length': '0',
          ...(req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined
            ? { connection: 'close' }
            : {}),
        });
        res.end();
      } catch {
        res.destroy();
      }
    },
  );
  server.on('clientError', (_err, socket) => socket.destroy());
  return server;
}

/** The host without its port (`[::1]:80` → `[::1]`). */
function hostName(host: string): string {
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1);
  const colon = host.indexOf(':');
  return colon < 0 ? host : host.slice(0, colon);
}
