#!/usr/bin/env node
// The services of the latency and TLS benchmarks, in a process of their own: HTTPS servers (and
// plain HTTP ones) answering every request with a small JSON body.
//
//   node lib/tls-services.js <certFile> <keyFile> https:<port> [http:<port>] [echo:<port>] [...]
//
// echo: a TCP echo server, for measuring a relay's round trip.
//
// Prints "ready" once all listen. Keep-alive connections are kept as long as the client wants.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';

const [certFile, keyFile, ...listeners] = process.argv.slice(2);
const cert = readFileSync(certFile);
const key = readFileSync(keyFile);
const body = JSON.stringify({ id: 42, name: 'widget', price: 9.99, tags: ['a', 'b'] });

function answer(req, res) {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
}

let up = 0;
for (const spec of listeners) {
  const [scheme, port] = spec.split(':');
  if (scheme === 'echo') {
    const echo = net.createServer({ noDelay: true }, (socket) => socket.pipe(socket));
    echo.listen(Number(port), '127.0.0.1', () => {
      if (++up === listeners.length) console.log('ready');
    });
    continue;
  }
  const server = scheme === 'https' ? https.createServer({ cert, key }, answer) : http.createServer(answer);
  server.keepAliveTimeout = 120_000;
  server.listen(Number(port), '127.0.0.1', () => {
    if (++up === listeners.length) console.log('ready');
  });
}
