import { errors } from 'undici';
import { ErrorCodes, errorCode } from '../problems/error-codes.js';
import { problems, type Problem } from '../problems/registry.js';

/** Why an upstream exchange failed, decided on error codes, never on messages. */
export type UpstreamFailure =
  'connect-timeout' | 'timeout' | 'connect-error' | 'reset' | 'protocol' | 'body-too-large' | 'client-gone';

export function classify(err: unknown): UpstreamFailure {
  const code = errorCode(err);
  // undici 7 leaves some parser errors without their HPE_ code (an invalid chunk size): its
  // error class still says what they are
  if (code === undefined && err instanceof errors.HTTPParserError) return 'protocol';
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
    case 'body-too-large':
      return problems.bodyTooLarge(limit);
    default:
      return problems.upstreamError(`connection to service "${service}" failed`);
  }
}
