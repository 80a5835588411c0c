/**
 * The PKI of the upstream TLS tests, made with the shared test PKI (certificates.ts): a CA, a
 * server certificate for "localhost", "orders.internal" and 127.0.0.1, a client certificate
 * (mTLS, CN "gatehouse"), and a second CA that signed nothing the servers present (the "wrong CA").
 */
import { TestPki as Pki } from './certificates.js';

export type TestPki = {
  /** file paths, for the gateway's config */
  files: {
    ca: string;
    otherCa: string;
    serverCert: string;
    serverKey: string;
    clientCert: string;
    clientKey: string;
  };
  /** PEM contents, for the test servers */
  ca: Buffer;
  serverCert: Buffer;
  serverKey: Buffer;
  clientCert: Buffer;
  clientKey: Buffer;
  /** a server certificate the other CA signed (refused by a gateway that trusts only `ca`) */
  otherServerCert: Buffer;
  otherServerKey: Buffer;
  remove(): void;
};

export function makeTestPki(): TestPki {
  const pki = new Pki('Upstream Test CA');
  const other = new Pki('Other Test CA');
  const server = pki.server(['localhost', 'orders.internal']);
  const client = pki.client('gatehouse');
  const otherServer = other.server(['localhost']);
  return {
    files: {
      ca: pki.ca.cert,
      otherCa: other.ca.cert,
      serverCert: server.cert,
      serverKey: server.key,
      clientCert: client.cert,
      clientKey: client.key,
    },
    ca: Buffer.from(pki.ca.certPem),
    serverCert: Buffer.from(server.certPem),
    serverKey: Buffer.from(server.keyPem),
    clientCert: Buffer.from(client.certPem),
    clientKey: Buffer.from(client.keyPem),
    otherServerCert: Buffer.from(otherServer.certPem),
    otherServerKey: Buffer.from(otherServer.keyPem),
    remove: () => {
      pki.remove();
      other.remove();
    },
  };
}
