/**
 * The data plane's listeners, as `listen` configures them:
 *
 * - cleartext (no `tls`): node's HTTP server (data-plane.ts), exactly as without this module;
 *   with `http2.cleartext` its connections are sniffed first: the HTTP/2 connection preface
 *   (`PRI * HTTP/2.0`) goes to an HTTP/2 server (h2c with prior knowledge), anything else to
 *   the HTTP/1 server;
 * - `tls`: an HTTP/2 secure server with the HTTP/1.1 fallback (ALPN `h2`, `http/1.1`), or an
 *   HTTPS server when `http2.enabled` is false; certificates from certificates.ts;
 * - `plain` beside `tls`: a cleartext listener that redirects to HTTPS, or serves as above.
 *
 * Every request, whichever way it came, goes through the one RequestFlow.
 */
import { createServer as createHttp2Server, createSecureServer } from 'node:http2';
import type { Http2ServerRequest } from 'node:http2';
import { createServer as createHttpsServer } from 'node:https';
import type { IncomingMessage, Server } from 'node:http';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import type { GatewayMetrics } from '../../observability/metrics.js';
import type { Logger } from '../../observability/logger.js';
import { createDataPlane, onUpgradeAndClientError } from '../data-plane.js';
import { RequestFlow, reportFailure, type DataPlaneState } from '../request-flow.js';
import { GatewayH2Response, GatewayResponse } from '../response.js';
import { CertificateStore } from './certificates.js';
import { http2Options, Http2Sessions } from './h2-sessions.js';
import { createRedirectServer } from './redirect.js';
import { handshakeFailureReason } from './tls-errors.js';

/** A server that tracks its HTTP/1 connections (node's HTTP server, or HTTP/2's fallback). */
type Http1Tracking = { closeIdleConnections(): void; closeAllConnections(): void };

export class DataPlaneListeners {
  /** listens on `listen.port` */
  readonly main: NetServer;
  /** listens on `listen.plain.port` */
  readonly plain: NetServer | null = null;
  readonly certificates: CertificateStore | null = null;
  private readonly http1: Http1Tracking[] = [];
  private readonly sessions: Http2Sessions;

  constructor(
    private readonly state: DataPlaneState,
    metrics: GatewayMetrics,
    logger: Logger,
  ) {
    const config = state.runtime.config;
    const listen = config.listen;
    const flow = new RequestFlow(state);
    this.sessions = new Http2Sessions(listen.http2, metrics.http2SessionsClosed);
    const tls = listen.tls;
    if (tls === undefined) {
      this.main = this.cleartext(flow);
      return;
    }
    this.certificates = new CertificateStore(tls, logger, (outcome) =>
      metrics.tlsCertificateReloads.labels(outcome).inc(),
    );
    this.main = this.secure(flow, metrics);
    const plain = listen.plain;
    if (plain !== undefined) {
      if (plain.mode === 'serve') this.plain = this.cleartext(flow);
      else {
        const redirect = createRedirectServer(
          plain.redirectStatus,
          () => plain.httpsPort ?? this.port,
          config.limits,
        );
        this.http1.push(redirect);
        this.plain = redirect;
      }
    }
  }

  /** node's HTTP server; with h2c, sniffing each connection's first bytes. */
  private cleartext(flow: RequestFlow): Server {
    const server = createDataPlane(this.state, flow);
    this.http1.push(server);
    const h2 = this.state.runtime.config.listen.http2;
    if (!h2.cleartext) return server;
    const h2c = createHttp2Server({
      ...http2Options(h2, this.state.runtime.config.limits.maxHeaderSize),
      Http2ServerResponse: GatewayH2Response,
    });
    this.onHttp2Requests(h2c, flow);
    this.sessions.attach(h2c, 'connection');
    // node's own connection listener runs only for connections that are not HTTP/2
    const http1 = server.listeners('connection') as ((socket: Socket) => void)[];
    server.removeAllListeners('connection');
    const timeout = this.state.runtime.config.limits.headersTimeout;
    const events = this.state.events;
    server.on('connection', (socket: Socket) =>
      sniff(socket, timeout, (isH2) => {
        // runs in a 'data' listener: nothing above would catch
        try {
          if (isH2) h2c.emit('connection', socket);
          else {
            for (const listener of http1) listener.call(server, socket);
            socket.resume(); // the bytes put back reach node's parser as 'data'
          }
        } catch (err) {
          socket.destroy();
          reportFailure(events, err, null);
        }
      }),
    );
    return server;
  }

  /** HTTPS, with HTTP/2 by ALPN unless it is off. */
  private secure(flow: RequestFlow, metrics: GatewayMetrics): NetServer {
    const config = this.state.runtime.config;
    const { tls, http2 } = config.listen;
    const limits = config.limits;
    const store = this.certificates as CertificateStore;
    const common = {
      SNICallback: store.sni,
      handshakeTimeout: tls!.handshakeTimeout,
      requestCert: tls!.clientCertificates !== undefined,
      rejectUnauthorized: tls!.clientCertificates?.mode === 'required',
      minVersion: tls!.minVersion,
    };
    let server: TlsServer;
    if (http2.enabled) {
      const secure = createSecureServer({
        ...common,
        ...http2Options(http2, limits.maxHeaderSize),
        allowHTTP1: true,
        Http1ServerResponse: GatewayResponse,
        Http2ServerResponse: GatewayH2Response,
      });
      // the HTTP/1.1 fallback runs node's HTTP/1 connection code, which reads these off the server
      Object.assign(secure, {
        headersTimeout: limits.headersTimeout,
        requestTimeout: limits.requestTimeout,
        keepAliveTimeout: limits.keepAliveTimeout,
        maxHeaderSize: limits.maxHeaderSize,
        requireHostHeader: false,
        joinDuplicateHeaders: false,
        connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(limits.headersTimeout / 4))),
      });
      this.onHttp2Requests(secure, flow);
      onUpgradeAndClientError(secure, flow, this.state.events);
      this.sessions.attach(secure, 'secureConnection');
      server = secure as unknown as TlsServer;
    } else {
      const https = createHttpsServer({
        ...common,
        requestTimeout: limits.requestTimeout,
        headersTimeout: limits.headersTimeout,
        keepAliveTimeout: limits.keepAliveTimeout,
        maxHeaderSize: limits.maxHeaderSize,
        requireHostHeader: false,
        joinDuplicateHeaders: false,
        noDelay: true,
        ServerResponse: GatewayResponse,
      });
      https.on('request', (req, res) => flow.request(req, res as GatewayResponse, false));
      https.on('checkContinue', (req, res) => flow.request(req, res as GatewayResponse, true));
      onUpgradeAndClientError(https, flow, this.state.events);
      server = https;
    }
    this.http1.push(server as unknown as Http1Tracking);
    store.attach(server);
    const failures = metrics.tlsHandshakeFailures;
    const events = this.state.events;
    server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
      try {
        failures.labels(handshakeFailureReason(err)).inc();
        socket.destroy();
      } catch (failure) {
        reportFailure(events, failure, null);
      }
    });
    return server;
  }

  /** Requests of an HTTP/2 server (and of its HTTP/1.1 fallback, told apart by the response kind). */
  private onHttp2Requests(server: NodeJS.EventEmitter, flow: RequestFlow): void {
    const dispatch = (expectContinue: boolean) => (req: Http2ServerRequest, res: GatewayH2Response) => {
      if (res.http2) flow.requestH2(req, res, expectContinue);
      else flow.request(req as unknown as IncomingMessage, res as unknown as GatewayResponse, expectContinue);
    };
    server.on('request', dispatch(false));
    server.on('checkContinue', dispatch(true));
  }

  /** Reads the certificates (before listening). */
  async prepare(): Promise<void> {
    const store = this.certificates;
    if (store === null) return;
    const set = await store.load();
    (this.main as TlsServer).setSecureContext(set.defaults);
    store.watch();
  }

  async listen(): Promise<void> {
    const listen = this.state.runtime.config.listen;
    await listenOn(this.main, listen.host, listen.port);
    if (this.plain !== null && listen.plain !== undefined)
      await listenOn(this.plain, listen.plain.host ?? listen.host, listen.plain.port);
  }

  get listening(): boolean {
    return this.main.listening;
  }

  get port(): number {
    return (this.main.address() as AddressInfo).port;
  }

  get plainPort(): number | null {
    return this.plain === null ? null : (this.plain.address() as AddressInfo).port;
  }

  /** Re-reads the certificates (SIGHUP, POST /reload); resolves once the new ones are in use. */
  reloadCertificates(trigger: string): Promise<unknown> {
    return this.certificates?.reload(trigger) ?? Promise.resolve();
  }

  /** Stops accepting; resolves once every connection has ended. */
  close(): Promise<void> {
    this.certificates?.close();
    const closing = [this.main, this.plain].filter((s): s is NetServer => s !== null && s.listening);
    return Promise.all(closing.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))).then(
      () => undefined,
    );
  }

  closeIdleConnections(): void {
    for (const s of this.http1) s.closeIdleConnections();
    this.sessions.closeIdle();
  }

  closeAllConnections(): void {
    for (const s of this.http1) s.closeAllConnections();
    this.sessions.closeAll();
  }

  async connectionCount(): Promise<number> {
    const count = (s: NetServer | null) =>
      s === null
        ? 0
        : new Promise<number>((resolve, reject) =>
            s.getConnections((err, n) => (err ? reject(err) : resolve(n))),
          );
    const [a, b] = await Promise.all([count(this.main), count(this.plain)]);
    return a + b;
  }
}

/** The HTTP/2 connection preface begins with these bytes; no HTTP/1 method does. */
const PRI = Buffer.from('PRI');

/**
 * Waits for a connection's first bytes and says whether it is HTTP/2 (prior knowledge). The
 * bytes are put back for the server that takes the connection. A client that sends nothing is
 * cut after `timeout` (the HTTP/1 server's own header timeout starts only once it has it).
 */
function sniff(socket: Socket, timeout: number, then: (isH2: boolean) => void): void {
  let seen: Buffer | null = null;
  const timer = setTimeout(() => socket.destroy(), timeout);
  const onError = (): void => {
    clearTimeout(timer);
    socket.destroy();
  };
  const onData = (chunk: Buffer): void => {
    seen = seen === null ? chunk : Buffer.concat([seen, chunk]);
    if (seen.length < PRI.length && PRI.subarray(0, seen.length).equals(seen)) return; // not yet known
    clearTimeout(timer);
    socket.off('data', onData);
    socket.off('error', onError);
    socket.pause();
    socket.unshift(seen);
    then(seen.length >= PRI.length && seen.subarray(0, PRI.length).equals(PRI));
  };
  socket.on('data', onData);
  socket.on('error', onError);
  socket.once('close', () => clearTimeout(timer));
}

function listenOn(server: NetServer, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
