/**
 * HTTP/2 client sessions: their settings and flood limits, and the set of open sessions the
 * drain closes (GOAWAY, then the streams in flight finish). The limits, each closing the session:
 *
 * - rapid reset (CVE-2023-44487): a stream the client resets before it was answered costs the
 *   gateway a routed request and an upstream exchange, and costs the client one frame; more than
 *   `maxResets` within `resetWindow` closes the session (GOAWAY ENHANCE_YOUR_CALM);
 * - CONTINUATION flood, oversized headers: nghttp2 bounds the header block
 *   (`maxHeaderListSize`) and the CONTINUATION frames of one block; the stream or session is
 *   refused before the block is kept;
 * - SETTINGS and PING floods: nghttp2 closes a session whose acknowledgements queue up unread
 *   (the client does not read), and `maxSettings` bounds one frame; `maxSessionMemory` caps
 *   what a session may hold;
 * - invalid frames and refused streams: node closes the session after too many.
 * Every closing is counted (`gatehouse_http2_sessions_closed_total{reason}`), never logged per
 * session at error level.
 */
import { constants, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { FastCounter } from '../../observability/fast-metrics.js';
import type { Http2Config } from './config.js';

/** The session options of `http2.createServer` / `createSecureServer` for `config`. */
export function http2Options(config: Http2Config, maxHeaderSize: number) {
  return {
    settings: {
      maxConcurrentStreams: config.maxConcurrentStreams,
      maxHeaderListSize: config.maxHeaderListSize,
      initialWindowSize: config.initialWindowSize,
      enablePush: false,
    },
    // what nghttp2 accepts as one header block (node's default would be 64 kB)
    maxHeaderSize: Math.min(config.maxHeaderListSize, Math.max(maxHeaderSize, 1024)),
    maxSessionMemory: config.maxSessionMemory,
    maxOutstandingPings: config.maxOutstandingPings,
    maxSettings: config.maxSettings,
    // node's defaults, stated: frames nghttp2 refuses, and streams refused over the stream limit
    maxSessionInvalidFrames: 1000,
    maxSessionRejectedStreams: 100,
  };
}

type Guard = { resets: number; since: number };

export class Http2Sessions {
  readonly open = new Set<ServerHttp2Session>();
  private readonly guards = new WeakMap<ServerHttp2Session, Guard>();
  /** counts the client's resets (one function for every stream: `this` is the stream) */
  private readonly onStreamClose: (this: ServerHttp2Stream) => void;

  constructor(
    private readonly config: Http2Config,
    private readonly closed: FastCounter | null,
  ) {
    const reset = (session: ServerHttp2Session): void => this.reset(session);
    this.onStreamClose = function (this: ServerHttp2Stream): void {
      // reset before it was answered: by the client (the gateway answers every request it reads)
      if (this.rstCode === constants.NGHTTP2_NO_ERROR || this.headersSent) return;
      const session = this.session;
      if (session !== undefined) reset(session as ServerHttp2Session);
    };
  }

  /** Manages the sessions of `server`. */
  attach(server: NodeJS.EventEmitter): void {
    server.on('session', (session: ServerHttp2Session) => this.add(session));
    // a session error is the session's end: counted on the session; nothing else to do
    server.on('sessionError', () => undefined);
    const onStreamClose = this.onStreamClose;
    server.on('stream', (stream: ServerHttp2Stream) => {
      stream.once('close', onStreamClose);
    });
  }

  private add(session: ServerHttp2Session): void {
    this.open.add(session);
    this.guards.set(session, { resets: 0, since: performance.now() });
    session.once('close', () => this.open.delete(session));
    session.on('error', (err: NodeJS.ErrnoException) => this.count(reasonOf(err)));
    session.on('frameError', () => undefined);
    const idle = this.config.idleTimeout;
    if (idle > 0) session.setTimeout(idle, () => session.close());
  }

  private reset(session: ServerHttp2Session): void {
    const guard = this.guards.get(session);
    if (guard === undefined || session.destroyed) return;
    const now = performance.now();
    if (now - guard.since > this.config.resetWindow) {
      guard.since = now;
      guard.resets = 0;
    }
    if (++guard.resets <= this.config.maxResets) return;
    this.count('rapid_reset');
    session.destroy(undefined, constants.NGHTTP2_ENHANCE_YOUR_CALM);
  }

  private count(reason: string): void {
    this.closed?.labels(reason).inc();
  }

  /** Drain: every session gets a GOAWAY; its streams in flight finish, then it closes. */
  closeIdle(): void {
    for (const session of this.open) if (!session.closed) session.close();
  }

  /** Drain timeout: whatever is left is cut. */
  closeAll(): void {
    for (const session of this.open) session.destroy();
  }
}

/** A session error's reason label (a small, fixed set). */
function reasonOf(err: NodeJS.ErrnoException): string {
  const message = err.message ?? '';
  if (/flood/i.test(message)) return 'flood';
  if (err.code === 'ERR_HTTP2_SESSION_ERROR' || err.code === 'ERR_HTTP2_ERROR') return 'protocol_error';
  return 'session_error';
}
