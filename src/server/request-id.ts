import { randomUUID } from 'node:crypto';

/** An id the client sent is kept when it is short and plain; anything else is replaced. */
const SANE = /^[A-Za-z0-9._:-]{1,128}$/;

export function requestIdFor(sent: string | undefined): string {
  return sent !== undefined && SANE.test(sent) ? sent : randomUUID();
}
