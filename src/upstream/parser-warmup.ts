/**
 * undici compiles its HTTP/1 parser (WebAssembly) synchronously on a process's first upstream
 * connection, which blocks the event loop for some 40 ms in the middle of the first requests. A
 * connection to nowhere, through a connector that hands undici an in-memory stream, makes it
 * compile at start instead, when the first target is made: the client is destroyed as soon as it
 * counts as connected, and sends nothing anywhere. Should undici compile elsewhere one day, this
 * costs one idle client.
 */
import type { Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { Client } from 'undici';

let warmed = false;

/**
 * Compiles it once per process, now: undici connects (and compiles) within `dispatch`, so the
 * compile is over before the caller goes on to start anything timed (a health check's first
 * request, with its own timeout, would otherwise pay for it).
 */
export function warmHttpParser(): void {
  if (warmed) return;
  warmed = true;
  const client = new Client('http://parser-warmup.invalid', {
    connect: (_options, callback) => {
      const nowhere = new Duplex({ read: () => undefined, write: (_chunk, _encoding, done) => done() });
      callback(null, nowhere as Socket); // undici reads and writes it as a stream, nothing more
    },
  });
  const close = () => void client.destroy().catch(() => undefined);
  client.once('connect', close);
  client.once('connectionError', close);
  client.dispatch(
    { path: '/', method: 'GET' },
    {
      onRequestStart: (controller) => controller.abort(new Error('parser warm-up')),
      onResponseError: close,
    },
  );
}
