/**
 * Connection upgrades (WebSocket): routed and checked like any request, then the upstream's
 * 101 is relayed and the two sockets are piped together. Any other answer is relayed as is.
 */
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import { runChain } from '../pipeline/chain.js';
import { problems, type Problem } from '../pipeline/problems.js';
import { endAndLinger, writeRawProblem } from '../server/respond.js';
import { resolveRequest } from '../server/resolve.js';
import type { GatewayResponse } from '../server/response.js';
import type { Runtime } from '../server/runtime.js';
import { REJECTED } from './circuit-breaker.js';
import { classify, problemFor } from './errors.js';
import { upstreamPath } from './proxy.js';
import type { Service } from './service.js';
import type { Target } from './target.js';

export function handleUpgrade(
  rt: Runtime,
  req: IncomingMessage,
  socket: Socket,
  head: Buffer,
  draining: boolean,
  /** open upgraded connections, so a drain that times out can close them */
  upgraded: Set<Socket>,
  /** stands for the response in metrics and the access log (never written: answers go to the socket) */
  res: GatewayResponse,
  /** records the request once its answer is known (101, a refusal, or a problem) */
  answered: (status: number) => void,
  /** a stage or the dispatch threw (a bug): reported here, answered with 500 */
  failed: (err: unknown) => void,
): void {
  upgraded.add(socket);
  socket.once('close', () => upgraded.delete(socket));
  socket.on('error', () => socket.destroy());
  const r = resolveRequest(rt, req, res);
  const requestId = r.ok ? r.ctx.requestId : r.requestId;
  const fail = (p: Problem) => {
    res.problemCode = p.code;
    answered(p.status);
    writeRawProblem(socket, p, requestId);
  };
  if (draining) return fail(problems.shuttingDown());
  if (!r.ok) return fail(r.problem);
  const upgrade = req.headers.upgrade;
  if (upgrade === undefined)
    return fail(problems.badRequest('Connection: upgrade without an Upgrade header'));
  const ctx = r.ctx;
  const route = ctx.route;
  runChain(ctx, route.stages, 0, {
    reject: (_ctx, p) => fail(p),
    failed: (_ctx, err) => {
      failed(err);
      fail(problems.internal());
    },
    proceed: () => {
      const service = route.service;
      const generation = service.breaker.admit();
      if (generation === REJECTED)
        return fail(problems.circuitOpen(service.name, service.breaker.retryAfterMs()));
      const target = service.pick(null);
      if (target === null) {
        service.breaker.record(generation, 'cancelled');
        return fail(problems.noHealthyTarget(service.name));
      }
      target.inflight++;
      target.pool.dispatch(
        { path: upstreamPath(ctx), method: 'GET', headers: ctx.upstreamHeaders, body: null, upgrade },
        new UpgradeRelay(socket, head, requestId, service, target, generation, res, answered),
      );
    },
  });
}

function rawHeaderLines(raw: readonly (Buffer | string)[] | null): string {
  let out = '';
  if (raw === null) return out;
  for (let i = 0; i < raw.length; i += 2) out += `${raw[i]?.toString()}: ${raw[i + 1]?.toString()}\r\n`;
  return out;
}

class UpgradeRelay implements Dispatcher.DispatchHandler {
  constructor(
    private readonly client: Socket,
    private readonly head: Buffer,
    private readonly requestId: string,
    private readonly service: Service,
    private readonly target: Target,
    private readonly generation: number,
    private readonly res: GatewayResponse,
    private readonly answered: (status: number) => void,
  ) {}

  private readonly started = performance.now();
  private finished = false;

  /**
   * Reports the upgrade's outcome once: to the service (breaker, passive health), and as the
   * request's answer (`answer`: the status the client got) to metrics and the access log.
   */
  private finish(failure: ReturnType<typeof classify> | null, status: number, answer: number): void {
    if (this.finished) return;
    this.finished = true;
    const ms = performance.now() - this.started;
    const ctx = this.res.ctx;
    if (ctx !== null) {
      ctx.attempts = 1;
      ctx.upstream = this.target.address;
      ctx.upstreamDurationMs = ms;
    }
    this.answered(answer);
    this.service.finish(this.target, this.generation, failure, status, ms / 1000);
  }

  onConnect(abort: () => void): void {
    if (this.client.destroyed) abort();
    else this.client.once('close', abort);
  }

  onUpgrade(statusCode: number, rawHeaders: Buffer[] | string[] | null, upstream: Duplex): void {
    this.finish(null, statusCode, statusCode);
    const client = this.client;
    client.write(
      `HTTP/1.1 ${statusCode} Switching Protocols\r\n${rawHeaderLines(rawHeaders)}x-request-id: ${this.requestId}\r\n\r\n`,
    );
    if (this.head.length > 0) upstream.write(this.head);
    upstream.on('error', () => client.destroy());
    client.on('error', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.on('close', () => upstream.destroy());
    client.pipe(upstream).pipe(client);
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[]): boolean {
    this.finish(null, statusCode, statusCode);
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
      `HTTP/1.1 ${statusCode} Upgrade Refused\r\n${lines}x-request-id: ${this.requestId}\r\nconnection: close\r\n\r\n`,
    );
    return true;
  }

  onData(chunk: Buffer): boolean {
    return this.client.write(chunk);
  }

  onComplete(): void {
    endAndLinger(this.client);
  }

  onError(err: Error): void {
    const failure = classify(err);
    const p = problemFor(failure, this.service.name, 0);
    if (!this.finished) this.res.problemCode = p.code;
    this.finish(failure, 0, p.status);
    writeRawProblem(this.client, p, this.requestId);
  }
}
