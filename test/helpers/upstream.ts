/**
 * Scripted upstream servers on 127.0.0.1:0. A handler per request, with the attempt number, so
 * a test decides exactly what the upstream does (answer, hang, reset, stream slowly).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export type Handler = (req: IncomingMessage, res: ServerResponse, attempt: number) => void;

export type Upstream = {
  url: string;
  port: number;
  server: Server;
  /** every request the upstream received, with its raw headers and body */
  received: Array<{
    method: string;
    url: string;
    headers: IncomingMessage['headers'];
    rawHeaders: string[];
    body: string;
  }>;
  close(): Promise<void>;
};

export async function startUpstream(handler: Handler = echo): Promise<Upstream> {
  let attempt = 0;
  const received: Upstream['received'] = [];
  const server = createServer((req, res) => {
    const entry = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      body: '',
    };
    received.push(entry);
    handler(req, res, attempt++);
  });
  server.on('upgrade', (req, socket: Socket) => {
    received.push({
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      body: '',
    });
    socket.write('HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n');
    socket.pipe(socket); // echo frames back
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Answers with JSON describing the request it got (method, url, headers, body). */
export const echo: Handler = (req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const body = JSON.stringify({
      method: req.method,
      url: req.url,
      headers: req.headers,
      body: Buffer.concat(chunks).toString(),
    });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
};

/** A TCP server that does what `onConnection` says with raw sockets (reset, garbage, silence). */
export async function startRawUpstream(
  onConnection: (socket: Socket) => void,
): Promise<{ url: string; close(): Promise<void>; server: NetServer }> {
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Next candidate of `closedPort`: below 1024, outside the kernel's range for port 0. */
let nextClosedPort = 900;

/**
 * A port nothing listens on, so connections to it are refused. Not one bound and released: the
 * kernel hands such a port to the next server that listens on port 0, and tests in other workers
 * start servers all the time (a refused target then answered 200). Ports below 1024 are never
 * handed out for port 0 and no test listens on them; each candidate is checked to refuse.
 */
export async function closedPort(): Promise<number> {
  while (nextClosedPort < 1024) {
    const port = nextClosedPort++;
    if (await refuses(port)) return port;
  }
  throw new Error('no closed port left below 1024');
}

function refuses(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'));
  });
}
