/**
 * Connection upgrades (WebSocket), the upstream side: once the server has routed and checked the
 * request like any other, the breaker admits it and a target is picked as for a plain request;
 * the upstream's 101 is relayed and the two sockets are piped together. Any other answer is
 * relayed as is. Failures go back to the server (`env.fail`), which writes them to the socket.
 */
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { REJECTED } from './circuit-breaker.js';
import { classify, problemFor } from './errors.js';
import { admit, pickTarget, serviceOf, upstreamPath, type ProxyEnv, type ProxyRequest } from './proxy.js';
import type { Service } from './service.js';
import type { Target } from './target.js';

export interface UpgradeEnv extends ProxyEnv {
  /** the upstream answered (101, or a refusal relayed as is): the request's status, once */
  answered(request: ProxyRequest, status: number): void;
  /** ends a raw socket after its last bytes (lingering for the client to read them) */
  endSocket(socket: Socket): void;
}

/**
 * Sends the upgrade request upstream; `head`: the bytes the client sent after its request
 * (already the upgraded protocol's).
 */
export function forwardUpgrade(
  ctx: ProxyRequest,
  client: Socket,
  head: Buffer,
  protocol: string,
  env: UpgradeEnv,
): void {
  const generation = admit(ctx, env);
  if (generation === REJECTED) return;
  const target = pickTarget(ctx, env, generation, null);
  if (target === null) return;
  target.inflight++;
  target.pool.dispatch(
    { path: upstreamPath(ctx), method: 'GET', headers: ctx.upstreamHeaders, body: null, upgrade: protocol },
    new UpgradeRelay(ctx, env, client, head, serviceOf(ctx), target, generation),
  );
}

function rawHeaderLines(raw: readonly (Buffer | string)[] | null): string {
  let out = '';
  if (raw === null) return out;
  for (let i = 0; i < raw.length; i += 2) out += `${raw[i]?.toString()}: ${raw[i + 1]?.toString()}\r\n`;
  return out;
}

class UpgradeRelay implements Dispatcher.DispatchHandler {
  constructor(
    private readonly ctx: ProxyRequest,
    private readonly env: UpgradeEnv,
    private readonly client: Socket,
    private readonly head: Buffer,
    private readonly service: Service,
    private readonly target: Target,
    private readonly generation: number,
  ) {}

  private readonly started = performance.now();
  private finished = false;

  /**
   * Reports the upgrade's outcome once, to the request (its attempt) and to the service (breaker,
   * passive health). False when it was reported already.
   */
  private finish(failure: ReturnType<typeof classify> | null, status: number): boolean {
    if (this.finished) return false;
    this.finished = true;
    const ms = performance.now() - this.started;
    const ctx = this.ctx;
    ctx.attempts = 1;
    ctx.upstream = this.target.address;
    ctx.upstreamDurationMs = ms;
    this.service.finish(this.target, this.generation, failure, status, ms / 1000);
    return true;
  }

  onConnect(abort: () => void): void {
    if (this.client.destroyed) abort();
    else this.client.once('close', abort);
  }

  onUpgrade(statusCode: number, rawHeaders: Buffer[] | string[] | null, upstream: Duplex): void {
    if (this.finish(null, statusCode)) this.env.answered(this.ctx, statusCode);
    const client = this.client;
    client.write(
      `HTTP/1.1 ${statusCode} Switching Protocols\r\n${rawHeaderLines(rawHeaders)}x-request-id: ${this.ctx.requestId}\r\n\r\n`,
    );
    if (this.head.length > 0) upstream.write(this.head);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.on('close', () => upstream.destroy());
    client.pipe(upstream).pipe(client);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[]): boolean {
    if (this.finish(null, statusCode)) this.env.answered(this.ctx, statusCode);
    // The upstream refused the upgrade: relay its answer, then close.
    const kept: Buffer[] = [];
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const name = String(rawHeaders[i]).toLowerCase();
      if (name !== 'connection' && name !== 'transfer-encoding' && name !== 'keep-alive') {
        kept.push(rawHeaders[i] as Buffer, rawHeaders[i + 1] as Buffer);
      }
    }
    const lines = rawHeaderLines(kept);
    this.client.write(
      `HTTP/1.1 ${statusCode} Upgrade Refused\r\n${lines}x-request-id: ${this.ctx.requestId}\r\nconnection: close\r\n\r\n`,
    );
    return true;
  }

  onData(chunk: Buffer): boolean {
    return this.client.write(chunk);
  }

  onComplete(): void {
    this.env.endSocket(this.client);
  }

  onError(err: Error): void {
    const failure = classify(err);
    this.finish(failure, 0);
    this.env.fail(this.ctx, problemFor(failure, this.service.name, 0));
  }
}
