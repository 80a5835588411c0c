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

export function responseHeaders(
  raw: readonly Buffer[],
  requestId: string,
  closeConnection: boolean,
): string[] {
  const out: string[] = [];
  let connection: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as Buffer).toString('latin1').toLowerCase();
    const value = (raw[i + 1] as Buffer).toString('latin1');
    if (HOP_BY_HOP.has(name)) {
      if (name === 'connection') connection = connection === undefined ? value : `${connection},${value}`;
      continue;
    }
    out.push(name, value);
  }
  if (connection !== undefined) {
    const named = connection
      .toLowerCase()
      .split(',')
      .map((t) => t.trim());
    for (let i = out.length - 2; i >= 0; i -= 2) if (named.includes(out[i] as string)) out.splice(i, 2);
  }
  out.push('x-request-id', requestId);
  if (closeConnection) out.push('connection', 'close');
  return out;
}
