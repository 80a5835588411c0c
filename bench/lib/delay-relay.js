#!/usr/bin/env node
// A TCP relay that delays every chunk, in each direction, by a fixed time: the round-trip delay of
// a network hop on loopback, where the kernel has no netem. Run as its own process (so the
// client's or the gateway's event loop does not add to the delay):
//
//   node lib/delay-relay.js <delayMicroseconds> <listenPort>:<targetPort> [...]
//
// Prints "ready" once every listener is up. Node's timers are whole milliseconds, so a delay
// under 2 ms is waited out by polling the clock from setImmediate, and only while a chunk is
// waiting: the relay spins during the delay windows, not between them. Order is kept: chunks of a
// direction leave in the order they came, each at its arrival time plus the delay.
import net from 'node:net';

const [delayArg, ...pairs] = process.argv.slice(2);
const delayNs = BigInt(Math.round(Number(delayArg) * 1000));
if (!(Number(delayArg) >= 0) || pairs.length === 0) {
  console.error('usage: delay-relay.js <delayMicroseconds> <listenPort>:<targetPort> [...]');
  process.exit(2);
}

/** chunks waiting, in arrival order: [due (ns), socket to write, chunk or null for end] */
const queue = [];
let polling = false;

function poll() {
  const now = process.hrtime.bigint();
  while (queue.length > 0 && queue[0][0] <= now) {
    const [, socket, chunk] = queue.shift();
    if (socket.destroyed) continue;
    if (chunk === null) socket.end();
    else socket.write(chunk);
  }
  if (queue.length === 0) {
    polling = false;
    return;
  }
  const waitMs = Number(queue[0][0] - now) / 1e6;
  if (waitMs > 2) setTimeout(poll, Math.floor(waitMs - 1));
  else setImmediate(poll);
}

function later(socket, chunk) {
  queue.push([process.hrtime.bigint() + delayNs, socket, chunk]);
  if (!polling) {
    polling = true;
    setImmediate(poll);
  }
}

function pipeDelayed(from, to) {
  from.on('data', (chunk) => later(to, chunk));
  from.on('end', () => later(to, null));
  from.on('error', () => to.destroy());
  from.on('close', () => setTimeout(() => to.destroy(), 50).unref());
}

let listening = 0;
for (const pair of pairs) {
  const [listenPort, targetPort] = pair.split(':').map(Number);
  const server = net.createServer({ noDelay: true }, (client) => {
    client.setNoDelay(true);
    const upstream = net.connect({ port: targetPort, host: '127.0.0.1', noDelay: true });
    pipeDelayed(client, upstream);
    pipeDelayed(upstream, client);
  });
  server.listen(listenPort, '127.0.0.1', () => {
    if (++listening === pairs.length) console.log('ready');
  });
}
