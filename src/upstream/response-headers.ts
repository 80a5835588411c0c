/** The upstream's response headers as sent to the client: hop-by-hop ones removed, ours added. */

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'x-request-id',
]);

/** Only names of these lengths can be in HOP_BY_HOP: the others skip the lower-casing. */
const HOP_LENGTHS = new Uint8Array(32);
for (const name of HOP_BY_HOP) HOP_LENGTHS[name.length] = 1;

/** Where responseHeaders reports the response's Content-Length (-1: none or unusable). */
export type LengthSink = { contentLength: number };

export function responseHeaders(
  raw: readonly Buffer[],
  requestId: string,
  closeConnection: boolean,
  sink: LengthSink,
): string[] {
  const out: string[] = [];
  let connection: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const rawName = raw[i] as Buffer;
    let name = rawName.toString('latin1');
    const value = (raw[i + 1] as Buffer).toString('latin1');
    if (rawName.length === 14 && name.toLowerCase() === 'content-length') {
      sink.contentLength = /^\d{1,15}$/.test(value) && sink.contentLength === -1 ? Number(value) : -2;
    } else if (rawName.length < 32 && HOP_LENGTHS[rawName.length] === 1) {
      name = name.toLowerCase();
      if (HOP_BY_HOP.has(name)) {
        if (name === 'connection') connection = connection === undefined ? value : `${connection},${value}`;
        continue;
      }
    }
    out.push(name, value);
  }
  if (connection !== undefined) {
    const named = connection
      .toLowerCase()
      .split(',')
      .map((t) => t.trim());
    for (let i = out.length - 2; i >= 0; i -= 2) {
      if (named.includes((out[i] as string).toLowerCase())) out.splice(i, 2);
    }
  }
  if (sink.contentLength < -1) sink.contentLength = -1; // repeated: let the client's parser judge
  out.push('x-request-id', requestId);
  if (closeConnection) out.push('connection', 'close');
  return out;
}
