/**
 * A throw-away PKI for TLS tests, made with openssl in a temporary directory: a CA, a server
 * certificate for "localhost" and 127.0.0.1 signed by it, a client certificate (mTLS), and a
 * second CA that signed nothing the servers present (the "wrong CA").
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type TestPki = {
  dir: string;
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
  remove(): void;
};

function openssl(dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

export function makeTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-pki-'));
  const ca = (name: string) => {
    openssl(dir, 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`);
    openssl(
      dir,
      'req',
      '-x509',
      '-new',
      '-key',
      `${name}.key`,
      '-subj',
      `/CN=${name}`,
      '-days',
      '2',
      '-out',
      `${name}.pem`,
    );
  };
  const leaf = (name: string, subject: string, ext: string) => {
    openssl(dir, 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`);
    openssl(dir, 'req', '-new', '-key', `${name}.key`, '-subj', subject, '-out', `${name}.csr`);
    writeFileSync(join(dir, `${name}.ext`), ext);
    openssl(
      dir,
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
      '-out',
      `${name}.pem`,
    );
  };
  ca('ca');
  ca('other-ca');
  leaf(
    'server',
    '/CN=localhost',
    'subjectAltName=DNS:localhost,DNS:orders.internal,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n',
  );
  leaf('client', '/CN=gatehouse', 'extendedKeyUsage=clientAuth\n');
  const f = (name: string) => join(dir, name);
  const files = {
    ca: f('ca.pem'),
    otherCa: f('other-ca.pem'),
    serverCert: f('server.pem'),
    serverKey: f('server.key'),
    clientCert: f('client.pem'),
    clientKey: f('client.key'),
  };
  return {
    dir,
    files,
    ca: readFileSync(files.ca),
    serverCert: readFileSync(files.serverCert),
    serverKey: readFileSync(files.serverKey),
    clientCert: readFileSync(files.clientCert),
    clientKey: readFileSync(files.clientKey),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
