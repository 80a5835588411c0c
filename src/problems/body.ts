import { PROBLEM_TYPE_BASE, type Problem } from './registry.js';

const UUID = /^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$/;

/**
 * A client-sent request id that is not a UUID, as a URI: a tag URI (RFC 4151), which mints an
 * identifier under a name the project holds without registering a URN namespace. A request id
 * is 1-128 of `A-Z a-z 0-9 . _ : -`, all valid there unescaped. The bare id is no URI reference:
 * `a:b` would read as scheme `a`, and `err-1` as a path relative to the request's URL.
 */
export const REQUEST_TAG = 'tag:gatehouse.dev,2026:request:';

/**
 * The problem's `instance` (RFC 9457 §3.1.5: a URI reference): `urn:uuid:<id>` (RFC 9562) when
 * the request id is a UUID (every id the gateway generates), else the tag URI above. Either way
 * the id follows the prefix exactly as `X-Request-Id` carries it.
 */
export function problemInstance(requestId: string): string {
  return UUID.test(requestId) ? `urn:uuid:${requestId}` : REQUEST_TAG + requestId;
}

/** The `application/problem+json` body; `instance` names the request id as a URI. */
export function problemBody(p: Problem, requestId: string): string {
  const body = {
    type: PROBLEM_TYPE_BASE + p.code,
    title: p.title,
    status: p.status,
    detail: p.detail,
    instance: problemInstance(requestId),
    code: p.code,
  };
  return JSON.stringify(p.errors === undefined ? body : { ...body, errors: p.errors });
}
