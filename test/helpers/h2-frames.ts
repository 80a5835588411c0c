/**
 * Raw HTTP/2 frames, for the hostile clients node:http2 will not be (it acknowledges SETTINGS,
 * bounds its own PINGs and never sends a header block in a hundred CONTINUATION frames).
 * Header blocks use HPACK literals without indexing and no Huffman coding: short names and
 * values only (under 127 bytes each).
 */
import { connect, type Socket } from 'node:net';

export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

export const FrameType = {
  DATA: 0,
  HEADERS: 1,
  RST_STREAM: 3,
  SETTINGS: 4,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
} as const;

export const END_STREAM = 0x1;
export const END_HEADERS = 0x4;
export const ACK = 0x1;

export function frame(
  type: number,
  flags: number,
  stream: number,
  payload: Buffer = Buffer.alloc(0),
): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/** An HPACK literal header field without indexing, with a literal name. */
export function literal(name: string, value: string): Buffer {
  if (name.length > 126 || value.length > 126) throw new Error('header too long for this encoder');
  return Buffer.concat([
    Buffer.from([0x00, name.length]),
    Buffer.from(name, 'latin1'),
    Buffer.from([value.length]),
    Buffer.from(value, 'latin1'),
  ]);
}

/** A request's header block: :method, :scheme, :path, :authority, then `extra`. */
export function requestBlock(path: string, authority: string, extra: Array<[string, string]> = []): Buffer {
  return Buffer.concat([
    literal(':method', 'GET'),
    literal(':scheme', 'http'),
    literal(':path', path),
    literal(':authority', authority),
    ...extra.map(([n, v]) => literal(n, v)),
  ]);
}

/** Frames the server sent, parsed as they come. */
export type Received = { type: number; flags: number; stream: number; payload: Buffer };

/** A cleartext HTTP/2 connection (prior knowledge) speaking raw frames. */
export class RawH2 {
  readonly frames: Received[] = [];
  closed = false;
  private buffer: Buffer = Buffer.alloc(0);

  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => this.parse(d));
    socket.on('error', () => undefined);
    socket.on('close', () => (this.closed = true));
  }

  static open(port: number): Promise<RawH2> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.write(Buffer.concat([PREFACE, frame(FrameType.SETTINGS, 0, 0)]));
        resolve(new RawH2(socket));
      });
      socket.once('error', reject);
    });
  }

  /** Writes `data`; false once the connection is gone. Waits for the kernel to take it. */
  write(data: Buffer): Promise<boolean> {
    if (this.closed || this.socket.destroyed) return Promise.resolve(false);
    return new Promise((resolve) => {
      this.socket.write(data, (err) => resolve(err == null && !this.closed));
    });
  }

  goaway(): Received | undefined {
    return this.frames.find((f) => f.type === FrameType.GOAWAY);
  }

  /** the error code of the GOAWAY the server sent, if any */
  goawayCode(): number | undefined {
    const g = this.goaway();
    return g === undefined ? undefined : g.payload.readUInt32BE(4);
  }

  destroy(): void {
    this.socket.destroy();
  }

  private parse(d: Buffer): void {
    this.buffer = this.buffer.length === 0 ? d : Buffer.concat([this.buffer, d]);
    while (this.buffer.length >= 9) {
      const length = this.buffer.readUIntBE(0, 3);
      if (this.buffer.length < 9 + length) return;
      this.frames.push({
        type: this.buffer[3] as number,
        flags: this.buffer[4] as number,
        stream: this.buffer.readUInt32BE(5) & 0x7fffffff,
        payload: this.buffer.subarray(9, 9 + length),
      });
      this.buffer = this.buffer.subarray(9 + length);
    }
  }
}
