import type { Readable } from 'node:stream';

export class BodyTooLargeError extends Error {
  readonly code = 'GATEHOUSE_BODY_TOO_LARGE';
  constructor(readonly limit: number) {
    super(`request body exceeds ${limit} bytes`);
  }
}

/**
 * A chunked request body, streamed with back-pressure and counted as it goes: over `limit`
 * bytes, the upload to the upstream is aborted with BodyTooLargeError.
 */
export async function* limitedBody(
  body: Readable,
  limit: number,
  counter: { bytesIn: number },
): AsyncGenerator<Buffer> {
  let seen = 0;
  for await (const chunk of body) {
    const buf = chunk as Buffer;
    seen += buf.length;
    counter.bytesIn = seen;
    if (seen > limit) throw new BodyTooLargeError(limit);
    yield buf;
  }
}
