/** Sends raw bytes to a port and collects what comes back until the server closes or a timeout. */
import { connect } from 'node:net';

export type RawResult = { text: string; closed: boolean; status: number | null };

export function rawRequest(
  port: number,
  payload: string | Buffer,
  options: { timeoutMs?: number; host?: string } = {},
): Promise<RawResult> {
  const timeoutMs = options.timeoutMs ?? 2000;
  return new Promise((resolve) => {
    const socket = connect(port, options.host ?? '127.0.0.1');
    let text = '';
    let closed = false;
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      resolve({ text, closed, status: m ? Number(m[1]) : null });
    };
    const timer = setTimeout(finish, timeoutMs);
    socket.on('data', (d) => (text += d.toString('latin1')));
    socket.on('end', () => {
      closed = true;
      finish();
    });
    socket.on('close', () => {
      closed = true;
      finish();
    });
    socket.on('error', () => undefined);
    socket.write(payload);
  });
}
