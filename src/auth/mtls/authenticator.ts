/**
 * Client certificates (mTLS) as credentials: the certificate the TLS layer verified against
 * `listen.tls.clientCertificates.ca` names the consumer, by its subject CN or a subjectAltName
 * (`auth.mtls.identity`), looked up in `auth.mtls.consumers` for its roles and tier. Nothing a
 * client sends in a header is believed: only the connection's verified peer certificate. A
 * connection without TLS or without a certificate: absent; a certificate that did not verify
 * (`clientCertificates.mode: optional` lets such a handshake through) or names no configured
 * consumer: invalid. The answer is kept per connection (an HTTP/2 connection carries many
 * requests, and its certificate cannot change).
 */
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { MtlsConfig } from '../config.js';
import { ABSENT, type AuthAttempt, type Authenticator, type Consumer } from '../types.js';

/** No standard scheme names a client certificate; this one says what is expected. */
export const MTLS_CHALLENGE = 'Mutual realm="gatehouse", mechanism="tls-client-certificate"';

export function createMtlsAuthenticator(config: MtlsConfig): Authenticator {
  const consumers = new Map<string, Consumer>();
  for (const [name, entry] of Object.entries(config.consumers)) {
    consumers.set(
      name,
      Object.freeze({ id: name, tier: entry.tier, roles: Object.freeze([...entry.roles]) }),
    );
  }
  const byConnection = new WeakMap<object, AuthAttempt>();
  const decide = (socket: TLSSocket): AuthAttempt => {
    const cert = socket.getPeerCertificate();
    if (cert === null || Object.keys(cert).length === 0) return ABSENT;
    if (!socket.authorized) {
      return {
        kind: 'invalid',
        reason: `client certificate not verified (${String(socket.authorizationError)})`,
      };
    }
    for (const name of namesOf(cert, config.identity)) {
      const consumer = consumers.get(name);
      if (consumer !== undefined) return { kind: 'ok', consumer };
    }
    return { kind: 'invalid', reason: 'the client certificate names no configured consumer' };
  };
  return {
    method: 'mtls',
    challenge: MTLS_CHALLENGE,
    authenticate(req: IncomingMessage): AuthAttempt {
      const socket = req.socket as TLSSocket;
      if (socket.encrypted !== true) return ABSENT;
      // HTTP/2's request socket is a proxy per session: the same object for every stream
      let attempt = byConnection.get(socket);
      if (attempt === undefined) {
        attempt = decide(socket);
        byConnection.set(socket, attempt);
      }
      return attempt;
    },
    close: () => Promise.resolve(),
  };
}

type PeerCertificate = ReturnType<TLSSocket['getPeerCertificate']>;

/** The certificate's names of the kind `identity` says, in order. */
function namesOf(cert: PeerCertificate, identity: MtlsConfig['identity']): string[] {
  if (identity === 'commonName') {
    const cn = cert.subject?.CN as string | string[] | undefined;
    return cn === undefined ? [] : Array.isArray(cn) ? cn : [cn];
  }
  const prefix = identity === 'dnsName' ? 'DNS:' : identity === 'email' ? 'email:' : 'URI:';
  return (cert.subjectaltname ?? '')
    .split(', ')
    .filter((s) => s.startsWith(prefix))
    .map((s) => s.slice(prefix.length));
}
