/** The reason label of a failed TLS handshake: a small, fixed set (an error's code is open-ended). */

const REASONS: Readonly<Record<string, string>> = {
  ERR_TLS_HANDSHAKE_TIMEOUT: 'timeout',
  ECONNRESET: 'reset',
  EPIPE: 'reset',
  ERR_SSL_HTTP_REQUEST: 'not_tls',
  ERR_SSL_WRONG_VERSION_NUMBER: 'not_tls',
  ERR_SSL_UNSUPPORTED_PROTOCOL: 'protocol_version',
  ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION: 'protocol_version',
  ERR_SSL_NO_SHARED_CIPHER: 'no_shared_cipher',
  ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE: 'no_client_certificate',
  ERR_SSL_CERTIFICATE_VERIFY_FAILED: 'bad_client_certificate',
};

export function handshakeFailureReason(err: NodeJS.ErrnoException): string {
  const code = err.code ?? '';
  const known = REASONS[code];
  if (known !== undefined) return known;
  // the client refused our certificate, or gave up for its own reasons (an alert it sent)
  if (code.startsWith('ERR_SSL_SSLV3_ALERT_') || code.startsWith('ERR_SSL_TLSV1_ALERT_')) return 'alert';
  return 'other';
}
