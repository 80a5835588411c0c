/**
 * Stable codes of the gateway's own errors that cross a module boundary (in the manner of
 * undici's `UND_ERR_*`): the module that catches one decides on its `code`, never on its class
 * (`instanceof` ties the catcher to the thrower's module) or its message (free text). Each error
 * class sets `code` to one of these; `docs/errors.md` lists them.
 *
 * A leaf module: it imports nothing of the project.
 */
export const ErrorCodes = {
  /** the request body exceeded `limits.bodySize` while it streamed to the upstream */
  BODY_TOO_LARGE: 'GATEHOUSE_BODY_TOO_LARGE',
  /** the rate-limit store could not decide (connection down, error reply, malformed reply) */
  STORE_UNAVAILABLE: 'GATEHOUSE_STORE_UNAVAILABLE',
  /** a call to the rate-limit store got no answer within its time budget */
  STORE_TIMEOUT: 'GATEHOUSE_STORE_TIMEOUT',
  /** the key database's schema is not what Gatehouse needs; a person must act */
  SCHEMA: 'GATEHOUSE_SCHEMA',
  /** the config file is invalid; the error's `problems` lists every problem */
  CONFIG_INVALID: 'GATEHOUSE_CONFIG_INVALID',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** The `code` of any thrown value (ours, node's `ECONNREFUSED`, undici's `UND_ERR_*`), if it has one. */
export function errorCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/** True when `err` carries `code` (every error with one of these codes is an `Error`). */
export function hasCode<C extends ErrorCode>(err: unknown, code: C): err is Error & { readonly code: C } {
  return errorCode(err) === code;
}
