/**
 * An `Upgrade: h2c` offer on an HTTP/1.1 port (what `curl --http2 http://` sends) is ignored and
 * the request answered as HTTP/1.1 (RFC 9110 §7.8: a server may ignore Upgrade; RFC 9113 drops
 * the mechanism). node's server has given the connection up at the upgrade, so the answer is
 * written on a response attached to the socket by hand, and the connection closes after it. A
 * body declared by Content-Length is read from the socket (after `head`) into a request of our
 * own, node having ended the upgrade request's body; a chunked one cannot be read (no parser is
 * left) and the caller refuses it.
 */
import { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { endAndLinger } from '../respond.js';
import { GatewayResponse } from '../response.js';

export function answerAsHttp1(
  offer: IncomingMessage,
  socket: Socket,
  head: Buffer,
): { req: IncomingMessage; res: GatewayResponse; chunked: boolean } {
  const chunked = offer.headers['transfer-encoding'] !== undefined;
  const length = Number(offer.headers['content-length'] ?? 0);
  const req =
    !chunked && length > 0 && Number.isSafeInteger(length) ? bodyReader(offer, socket, head, length) : offer;
  const res = new GatewayResponse(req);
  res.shouldKeepAlive = false;
  res.assignSocket(socket);
  res.once('finish', () => {
    res.detachSocket(socket);
    endAndLinger(socket);
  });
  socket.on('error', () => socket.destroy());
  return { req, res, chunked };
}

/** A request like `offer` whose body (`length` bytes: `head`, then the socket) is read as it comes. */
function bodyReader(offer: IncomingMessage, socket: Socket, head: Buffer, length: number): IncomingMessage {
  const req = new IncomingMessage(socket);
  req.method = offer.method as string;
  req.url = offer.url as string;
  req.headers = offer.headers;
  req.rawHeaders = offer.rawHeaders;
  req.httpVersion = offer.httpVersion;
  req.httpVersionMajor = offer.httpVersionMajor;
  req.httpVersionMinor = offer.httpVersionMinor;
  let left = length;
  const take = (chunk: Buffer): void => {
    const part = chunk.length > left ? chunk.subarray(0, left) : chunk;
    left -= part.length;
    req.push(part);
    if (left === 0) {
      socket.off('data', take);
      socket.pause(); // what follows is never read as a request
      req.complete = true;
      req.push(null);
    }
  };
  if (head.length > 0) take(head);
  if (left > 0) socket.on('data', take);
  return req;
}
