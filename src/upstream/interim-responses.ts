/**
 * Unsolicited `100 Continue` answers from upstreams, removed before undici's parser sees them.
 *
 * RFC 9110 §15.2: a client must be able to parse 1xx responses it did not ask for, and may
 * ignore them. undici's HTTP/1.1 parser handles every 1xx but 100: it destroys the connection
 * on any `100` ("bad response", `UND_ERR_SOCKET`, lib/dispatcher/client-h1.js), since it never
 * sends `Expect: 100-continue` itself. Some servers send `100 Continue` to every request with a
 * body anyway (HTTP/1.0-era behaviour RFC 2616 allowed), and the client then got a 502.
 *
 * The filter sits on the upstream socket's `read()`, which is how undici's parser takes bytes.
 * It is armed when undici writes a request's head (the public `undici:client:sendHeaders`
 * diagnostics channel names the socket), so it looks only at the first bytes of a response:
 * every connection carries one request at a time (`pipelining: 1` everywhere in the gateway),
 * so the next bytes after a request head start that request's response. While armed it drops
 * complete `HTTP/1.x 100` heads, lets other 1xx heads through (undici relays 103 and skips
 * 102 itself), and disarms at the first final status line, or at a 101 (what follows an upgrade
 * is another protocol). Once disarmed, a read costs one property check: the body is never
 * looked at.
 */
import { subscribe } from 'node:diagnostics_channel';
import { Socket } from 'node:net';

/** The longest 1xx head held while waiting for its end; past that the bytes go through as they are. */
export const MAX_INTERIM_HEAD = 16 * 1024;

const MORE = -1;
const FINAL = -2;
const PREFIX = Buffer.from('HTTP/1.');
const HEAD_END = Buffer.from('\r\n\r\n');

/**
 * The status of the 1xx head `data` starts with, MORE when too few bytes have arrived to tell,
 * or FINAL when it starts with anything else (a final response, or garbage the parser judges).
 */
export function interimStatus(data: Buffer): number {
  const n = Math.min(data.length, 12);
  for (let i = 0; i < n; i++) {
    const c = data[i] as number;
    const ok =
      i < 7
        ? c === PREFIX[i]
        : i === 7
          ? c === 0x30 || c === 0x31
          : i === 8
            ? c === 0x20
            : i === 9
              ? c === 0x31
              : c >= 0x30 && c <= 0x39;
    if (!ok) return FINAL;
  }
  if (n < 12) return MORE;
  return 100 + (data[10] as number) * 10 + (data[11] as number) - 0x30 * 11;
}

/** One upstream socket's filter: armed at each request, disarmed at the response's final head. */
export class InterimFilter {
  armed = false;
  /** bytes of an incomplete 1xx head, kept until the rest arrives */
  private held: Buffer | null = null;

  arm(): void {
    this.armed = true;
    this.held = null;
  }

  /** What the parser gets of `chunk`: the same bytes, less any 100 heads. null = nothing yet. */
  filter(chunk: Buffer): Buffer | null {
    if (!this.armed) return chunk;
    let data = this.held === null ? chunk : Buffer.concat([this.held, chunk]);
    this.held = null;
    let passed: Buffer[] | null = null;
    for (;;) {
      const status = interimStatus(data);
      if (status === FINAL) {
        this.armed = false;
        break;
      }
      const end = status === MORE ? -1 : data.indexOf(HEAD_END);
      if (end === -1) {
        if (data.length <= MAX_INTERIM_HEAD) {
          this.held = data;
          data = EMPTY;
        } else {
          this.armed = false; // not a head we can make sense of: the parser decides
        }
        break;
      }
      if (status === 101) {
        this.armed = false;
        break;
      }
      const next = end + HEAD_END.length;
      if (status !== 100) (passed ??= []).push(data.subarray(0, next));
      data = data.subarray(next);
      if (data.length === 0) break;
    }
    if (passed !== null) {
      passed.push(data);
      data = Buffer.concat(passed);
    }
    return data.length === 0 ? null : data;
  }
}

const EMPTY = Buffer.alloc(0);
const FILTER = Symbol('gatehouse.interimFilter');
type FilteredSocket = Socket & { [FILTER]?: InterimFilter };

/** Arms the socket's filter, wrapping its `read()` the first time. */
export function armInterimFilter(socket: Socket): void {
  const s = socket as FilteredSocket;
  let filter = s[FILTER];
  if (filter === undefined) {
    const f = new InterimFilter();
    filter = f;
    s[FILTER] = f;
    const read = s.read;
    s.read = function filteredRead(this: Socket, size?: number): unknown {
      const chunk: unknown = read.call(this, size);
      return f.armed && Buffer.isBuffer(chunk) ? f.filter(chunk) : chunk;
    };
  }
  filter.arm();
}

let installed = false;

/** Subscribes to undici's request heads once per process; every undici socket is filtered from then on. */
export function dropUnsolicitedContinue(): void {
  if (installed) return;
  installed = true;
  subscribe('undici:client:sendHeaders', (message) => {
    const socket = (message as { socket?: unknown }).socket;
    if (socket instanceof Socket) armInterimFilter(socket);
  });
}
