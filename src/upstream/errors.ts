import { errors } from 'undici';
import { ErrorCodes, errorCode } from '../problems/error-codes.js';
import { problems, type Problem } from '../problems/registry.js';

/** Why an upstream exchange failed, decided on error codes, never on messages. */
export type UpstreamFailure =
  | 'connect-timeout'
  | 'timeout'
  | 'connect-error'
  | 'tls'
  | 'reset'
  | 'protocol'
  | 'body-too-large'
  | 'client-gone';

/**
 * OpenSSL's certificate verification results, as node names them on the error (`err.code`):
 * the target's certificate was refused. The handshake's own failures are `ERR_SSL_*` (an alert
 * from the target: it refused our client certificate, no common protocol or cipher) and
 * `ERR_TLS_*` (the name does not match: ERR_TLS_CERT_ALTNAME_INVALID).
 */
const CERTIFICATE_REFUSED = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'INVALID_CA',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'HOSTNAME_MISMATCH',
]);

function isTlsCode(code: string): boolean {
  return CERTIFICATE_REFUSED.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_');
}

export function classify(err: unknown): UpstreamFailure {
  const code = errorCode(err);
  // undici 7 leaves some parser errors without their HPE_ code (an invalid chunk size): its
  // error class still says what they are
  if (code === undefined && err instanceof errors.HTTPParserError) return 'protocol';
  if (code !== undefined && isTlsCode(code)) return 'tls';
  switch (code) {
    case ErrorCodes.BODY_TOO_LARGE:
      return 'body-too-large';
    case 'UND_ERR_CONNECT_TIMEOUT':
      return 'connect-timeout';
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
      return 'timeout';
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EAI_AGAIN':
      return 'connect-error';
    case 'UND_ERR_ABORTED':
    case 'ERR_STREAM_PREMATURE_CLOSE':
    case 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH':
    case 'ECONNABORTED':
      return 'client-gone';
    case 'HPE_INVALID_CONSTANT':
    case 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH':
    case 'UND_ERR_INFO':
      return 'protocol';
    default:
      return code !== undefined && code.startsWith('HPE_') ? 'protocol' : 'reset';
  }
}

export function problemFor(failure: UpstreamFailure, service: string, limit: number): Problem {
  switch (failure) {
    case 'connect-timeout':
      return problems.upstreamTimeout(`service "${service}" did not accept a connection in time`);
    case 'timeout':
      return problems.upstreamTimeout(`service "${service}" did not answer in time`);
    case 'connect-error':
      return problems.upstreamError(`service "${service}" refused the connection`);
    case 'protocol':
      return problems.upstreamError(`service "${service}" sent an invalid response`);
    case 'tls':
      return problems.upstreamError(`TLS with service "${service}" failed (see the access log)`);
    case 'body-too-large':
      return problems.bodyTooLarge(limit);
    default:
      return problems.upstreamError(`connection to service "${service}" failed`);
  }
}

/**
 * Why an attempt failed, for the access log (`upstreamError`): the failure and the error's code,
 * and for TLS node's own words (which certificate check failed: the operator's first question).
 */
export function failureReason(failure: UpstreamFailure, err: unknown): string {
  const code = errorCode(err);
  if (failure === 'tls') {
    const message = err instanceof Error ? err.message : String(err);
    return `tls: ${message}${code === undefined ? '' : ` (${code})`}`;
  }
  return code === undefined ? failure : `${failure} (${code})`;
}
