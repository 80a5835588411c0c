import type { ServerResponse } from 'node:http';
import { problemBody } from './body.js';
import type { Problem } from './registry.js';

/**
 * Writes a problem+json response: the one writer of both ports (the data plane's `sendProblem`
 * records what it wrote for the access log, then calls this). `close` ends the connection after
 * it (unread body, draining). A response already under way cannot carry a problem any more: it is
 * cut instead.
 */
export function writeProblem(
  res: ServerResponse,
  p: Problem,
  requestId: string,
  close: boolean,
  body: string = problemBody(p, requestId),
): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const headers: string[] = [
    'content-type',
    'application/problem+json',
    'content-length',
    String(Buffer.byteLength(body)),
    'x-request-id',
    requestId,
    'cache-control',
    'no-store',
  ];
  if (p.headers) headers.push(...p.headers);
  if (close) headers.push('connection', 'close');
  res.writeHead(p.status, p.title, headers);
  res.end(body);
}
