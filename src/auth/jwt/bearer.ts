/**
 * The bearer token of a request: `Authorization: Bearer <token>` only (RFC 6750 §2.1). A token
 * in the query string or a body is never looked at. The scheme is case-insensitive (RFC 9110).
 */
import type { IncomingMessage } from 'node:http';

/** the token, or null when the request carries no bearer credential */
export function bearerToken(req: IncomingMessage): string | null {
  const header = req.headers.authorization;
  if (header === undefined || header.length < 7) return null;
  if (header.slice(0, 7).toLowerCase() !== 'bearer ') return null;
  return header.slice(7).trim();
}

/** a JWS in compact form: three base64url segments, the signature not empty */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

export function looksLikeJws(token: string): boolean {
  return COMPACT_JWS.test(token);
}
