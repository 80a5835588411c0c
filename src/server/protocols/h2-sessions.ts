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
import type { Socket } from 'node:net';
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

/** per session: its resets in the current window, and its connection */
type Guard = { resets: number; since: number; readonly socket: Socket | null };

export class Http2Sessions {
  readonly open = new Set<ServerHttp2Session>();
  private readonly guards = new WeakMap<ServerHttp2Session, Guard>();
  /**
   * The connection a session is being made on: node gives a session only a proxy of its socket,
   * which refuses `destroy`, and a destroyed session over TLS may wait on a client that keeps
   * sending. The server's connection event comes just before the session's, synchronously.
   */
  private connecting: Socket | null = null;
  constructor(
    private readonly config: Http2Config,
    private readonly closed: FastCounter | null,
  ) {}

  /** Manages the sessions of `server`. */
  attach(server: NodeJS.EventEmitter, connectionEvent: 'connection' | 'secureConnection'): void {
    server.prependListener(connectionEvent, (socket: Socket) => (this.connecting = socket));
    server.on('session', (session: ServerHttp2Session) => {
      const socket = this.connecting;
      this.connecting = null;
      this.add(session, socket);
    });
    // a session error is the session's end: counted on the session; nothing else to do
    server.on('sessionError', () => undefined);
    server.on('stream', (stream: ServerHttp2Stream) => {
      // a closed stream no longer knows its session: it is taken now
      const session = stream.session as ServerHttp2Session;
      stream.once('close', () => {
        // reset before it was answered: by the client (the gateway answers every request it reads)
        if (stream.rstCode !== constants.NGHTTP2_NO_ERROR && !stream.headersSent) this.reset(session);
      });
    });
  }

  private add(session: ServerHttp2Session, socket: Socket | null): void {
    this.open.add(session);
    this.guards.set(session, { resets: 0, since: performance.now(), socket });
    session.once('close', () => this.open.delete(session));
    session.on('error', (err: NodeJS.ErrnoException) => this.count(reasonOf(err)));
    session.on('frameError', () => undefined);
    const idle = this.config.idleTimeout;
    if (idle > 0) session.setTimeout(idle, () => session.close());
  }

  private reset(session: ServerHttp2Session): void {
    const guard = this.guards.get(session);
    if (guard === undefined || guard.resets < 0 || session.destroyed) return;
    const now = performance.now();
    if (now - guard.since > this.config.resetWindow) {
      guard.since = now;
      guard.resets = 0;
    }
    if (++guard.resets <= this.config.maxResets) return;
    guard.resets = -1; // closing: counted once
    this.count('rapid_reset');
    // GOAWAY first (no new stream is taken after it), then the connection goes once it is out
    session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM);
    setImmediate(() => this.cut(session));
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
    for (const session of this.open) this.cut(session);
  }

  private cut(session: ServerHttp2Session): void {
    session.destroy();
    this.guards.get(session)?.socket?.destroy();
  }
}

/** A session error's reason label (a small, fixed set). */
function reasonOf(err: NodeJS.ErrnoException): string {
  const message = err.message ?? '';
  if (/flood/i.test(message)) return 'flood';
  if (err.code === 'ERR_HTTP2_SESSION_ERROR' || err.code === 'ERR_HTTP2_ERROR') return 'protocol_error';
  return 'session_error';
}
