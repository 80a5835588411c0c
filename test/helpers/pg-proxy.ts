/**
 * A TCP proxy in front of the shared PostgreSQL that a test can slow down, stall or cut without
 * touching the server. It reads the client's side of the wire protocol (startup, then typed
 * messages) to know what each connection sends: it counts SELECTs on `api_keys` (Parse and
 * Query messages) and recognises the connections that LISTEN, so that a test can freeze only
 * those: what a frozen backend (SIGSTOP) or a NAT that forgot an idle flow looks like to the
 * gateway. Stalled bytes are dropped, sockets stay open, nothing is answered.
 */
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

type Pair = {
  client: Socket;
  server: Socket;
  listens: boolean;
  stalled: boolean;
  parser: ClientMessages;
};

export class PgProxy {
  private server: Server | null = null;
  private readonly pairs = new Set<Pair>();
  /** SELECT statements naming api_keys sent by clients, since the start */
  selects = 0;
  /** extra delay on every chunk the server sends back (a slow database) */
  latencyMs = 0;
  /** new and existing connections forward nothing (a hung database) */
  private hung = false;
  port = 0;

  constructor(
    private readonly upstreamPort = 5432,
    private readonly upstreamHost = '127.0.0.1',
  ) {}

  async start(): Promise<void> {
    const server = createServer((client) => this.accept(client));
    await new Promise<void>((resolve) => server.listen(this.port, '127.0.0.1', resolve));
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
  }

  /** `url` with its host and port replaced by the proxy's */
  urlFor(url: string): string {
    return url.replace(`${this.upstreamHost}:${this.upstreamPort}`, `127.0.0.1:${this.port}`);
  }

  /** connections that issued a LISTEN and are not stalled */
  get listeners(): number {
    return [...this.pairs].filter((p) => p.listens && !p.stalled).length;
  }

  /** Freezes the connections that LISTEN (existing ones; new ones pass). Returns how many. */
  stallListeners(): number {
    let n = 0;
    for (const p of this.pairs) {
      if (p.listens && !p.stalled) {
        p.stalled = true;
        n++;
      }
    }
    return n;
  }

  /** Every connection, existing and new, stops forwarding (accepted, never answered). */
  hang(): void {
    this.hung = true;
    for (const p of this.pairs) p.stalled = true;
  }

  /** New connections work again (stalled ones stay stalled: their protocol state is lost). */
  unhang(): void {
    this.hung = false;
  }

  async close(): Promise<void> {
    for (const p of this.pairs) {
      p.client.destroy();
      p.server.destroy();
    }
    this.pairs.clear();
    const server = this.server;
    this.server = null;
    if (server) await new Promise((r) => server.close(r));
  }

  private accept(client: Socket): void {
    const upstream = connect(this.upstreamPort, this.upstreamHost);
    const pair: Pair = {
      client,
      server: upstream,
      listens: false,
      stalled: this.hung,
      parser: new ClientMessages((type, body) => this.onClientMessage(pair, type, body)),
    };
    this.pairs.add(pair);
    const drop = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on('error', drop);
      s.on('close', drop);
    }
    client.on('data', (chunk: Buffer) => {
      if (pair.stalled) return;
      pair.parser.push(chunk);
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (pair.stalled) return;
      if (this.latencyMs > 0) {
        setTimeout(() => {
          if (!pair.stalled) client.write(chunk);
        }, this.latencyMs);
      } else client.write(chunk);
    });
  }

  private onClientMessage(pair: Pair, type: string, body: Buffer): void {
    let sql: string | null = null;
    if (type === 'Q') sql = cString(body, 0);
    else if (type === 'P') sql = cString(body, body.indexOf(0) + 1); // name, then the query
    if (sql === null) return;
    if (/^\s*LISTEN\b/i.test(sql)) pair.listens = true;
    if (/^\s*SELECT\b/i.test(sql) && /\bapi_keys\b/.test(sql)) this.selects++;
  }
}

function cString(buf: Buffer, from: number): string {
  const end = buf.indexOf(0, from);
  return buf.toString('utf8', from, end < 0 ? buf.length : end);
}

/** Splits the client's byte stream into messages: the untyped startup one, then typed ones. */
class ClientMessages {
  private buffered: Buffer = Buffer.alloc(0);
  private started = false;

  constructor(private readonly onMessage: (type: string, body: Buffer) => void) {}

  push(chunk: Buffer): void {
    this.buffered = this.buffered.length === 0 ? chunk : Buffer.concat([this.buffered, chunk]);
    for (;;) {
      if (!this.started) {
        if (this.buffered.length < 4) return;
        const len = this.buffered.readInt32BE(0);
        if (this.buffered.length < len) return;
        this.buffered = this.buffered.subarray(len);
        this.started = true;
        continue;
      }
      if (this.buffered.length < 5) return;
      const len = this.buffered.readInt32BE(1);
      if (this.buffered.length < 1 + len) return;
      this.onMessage(String.fromCharCode(this.buffered[0]!), this.buffered.subarray(5, 1 + len));
      this.buffered = this.buffered.subarray(1 + len);
    }
  }
}
