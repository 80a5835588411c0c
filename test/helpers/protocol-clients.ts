/**
 * One request, four ways into the gateway: HTTP/1.1 cleartext, HTTP/1.1 over TLS, HTTP/2 over
 * TLS (ALPN h2) and cleartext HTTP/2 with prior knowledge (h2c). Each way keeps its connection
 * (keep-alive agents, one HTTP/2 session each), so a test also sees that connections carry on.
 */
import {
  Agent as HttpAgent,
  request as httpRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
} from 'node:http';
import { connect, constants, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';

export type Way = 'http/1.1' | 'https/1.1' | 'h2' | 'h2c';
export const WAYS: readonly Way[] = ['http/1.1', 'https/1.1', 'h2', 'h2c'];

export type Answer = {
  status: number;
  /** lower-case names; HTTP/2 pseudo-headers left out */
  headers: Record<string, string | string[]>;
  body: Buffer;
};

export type Send = { method?: string; headers?: OutgoingHttpHeaders; body?: string | Buffer };

export class ProtocolClients {
  private readonly http = new HttpAgent({ keepAlive: true, maxSockets: 1 });
  private readonly https: HttpsAgent;
  private readonly sessions = new Map<Way, ClientHttp2Session>();

  constructor(
    private readonly ports: { tls: number; plain: number },
    private readonly tls: { ca: string | Buffer; servername?: string; cert?: string; key?: string },
  ) {
    this.https = new HttpsAgent({
      keepAlive: true,
      maxSockets: 1,
      ca: tls.ca,
      servername: tls.servername ?? 'localhost',
      ...(tls.cert === undefined ? {} : { cert: tls.cert, key: tls.key }),
    });
  }

  send(way: Way, path: string, options: Send = {}): Promise<Answer> {
    if (way === 'h2' || way === 'h2c') return this.sendH2(this.session(way), path, options);
    const secure = way === 'https/1.1';
    return new Promise((resolve, reject) => {
      const make = secure ? httpsRequest : httpRequest;
      const req = make({
        host: '127.0.0.1',
        port: secure ? this.ports.tls : this.ports.plain,
        path,
        method: options.method ?? 'GET',
        headers: options.headers ?? {},
        agent: secure ? this.https : this.http,
      });
      req.on('error', reject);
      req.on('response', (res: IncomingMessage) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers as Answer['headers'],
            body: Buffer.concat(chunks),
          }),
        );
      });
      req.end(options.body);
    });
  }

  /** the HTTP/2 session of `way` (opened on first use) */
  session(way: 'h2' | 'h2c'): ClientHttp2Session {
    let session = this.sessions.get(way);
    if (session === undefined || session.destroyed || session.closed) {
      session =
        way === 'h2'
          ? connect(`https://127.0.0.1:${this.ports.tls}`, {
              ca: this.tls.ca,
              servername: this.tls.servername ?? 'localhost',
              ...(this.tls.cert === undefined ? {} : { cert: this.tls.cert, key: this.tls.key }),
            })
          : connect(`http://127.0.0.1:${this.ports.plain}`);
      session.on('error', () => undefined);
      this.sessions.set(way, session);
    }
    return session;
  }

  sendH2(session: ClientHttp2Session, path: string, options: Send = {}): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const headers: OutgoingHttpHeaders = { ':method': options.method ?? 'GET', ':path': path };
      for (const [k, v] of Object.entries(options.headers ?? {})) headers[k.toLowerCase()] = v;
      const stream = session.request(headers, { endStream: options.body === undefined });
      let status = 0;
      let head: IncomingHttpHeaders = {};
      const chunks: Buffer[] = [];
      stream.on('response', (h) => {
        head = h;
        status = Number(h[':status']);
      });
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('error', reject);
      stream.on('close', () => {
        if (status === 0) {
          reject(new Error(`stream closed without a response (code ${stream.rstCode})`));
          return;
        }
        const out: Answer['headers'] = {};
        for (const [k, v] of Object.entries(head))
          if (!k.startsWith(':') && v !== undefined) out[k] = v as string;
        resolve({ status, headers: out, body: Buffer.concat(chunks) });
      });
      if (options.body !== undefined) stream.end(options.body);
    });
  }

  close(): void {
    this.http.destroy();
    this.https.destroy();
    for (const s of this.sessions.values()) s.close();
    this.sessions.clear();
  }
}

export const NGHTTP2 = constants;
