/**
 * A throwaway PKI for TLS tests, made with the openssl CLI: a CA, and certificates it signs for
 * servers (several DNS names, 127.0.0.1) and clients (a CN, optional DNS/email SANs). EC P-256
 * keys: quick to make. Everything lives in one temporary directory, removed by `remove`.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type Issued = {
  readonly cert: string;
  readonly key: string;
  readonly certPem: string;
  readonly keyPem: string;
};

export class TestPki {
  readonly dir: string;
  readonly ca: Issued;
  private serial = 0;

  constructor(caName = 'Gatehouse Test CA', dir?: string) {
    this.dir = dir ?? mkdtempSync(join(tmpdir(), 'gatehouse-pki-'));
    const slug = caName.replace(/[^A-Za-z0-9]+/g, '-').toLowerCase();
    const cert = join(this.dir, `${slug}.crt`);
    const key = join(this.dir, `${slug}.key`);
    openssl([
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      key,
      '-out',
      cert,
      '-days',
      '2',
      '-subj',
      `/CN=${caName}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
    this.ca = read(cert, key);
  }

  /** A server certificate for `names` (DNS names; 127.0.0.1 is always in its SANs too). */
  server(names: readonly string[], file = names[0] ?? 'server'): Issued {
    const san = [...names.map((n) => `DNS:${n}`), 'IP:127.0.0.1'].join(',');
    return this.issue(file, names[0] ?? 'server', [`subjectAltName=${san}`, 'extendedKeyUsage=serverAuth']);
  }

  /** A client certificate with subject CN `cn` (and `sans`, e.g. `DNS:svc.internal`, `email:a@b`). */
  client(cn: string, sans: readonly string[] = []): Issued {
    const ext = ['extendedKeyUsage=clientAuth'];
    if (sans.length > 0) ext.push(`subjectAltName=${sans.join(',')}`);
    return this.issue(`client-${cn}`, cn, ext);
  }

  private issue(file: string, cn: string, ext: readonly string[]): Issued {
    const base = join(this.dir, `${file.replace(/[^A-Za-z0-9.-]+/g, '_')}-${++this.serial}`);
    const extFile = `${base}.ext`;
    writeFileSync(extFile, ext.join('\n') + '\n');
    openssl([
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      `${base}.key`,
      '-out',
      `${base}.csr`,
      '-subj',
      `/CN=${cn}`,
    ]);
    openssl([
      'x509',
      '-req',
      '-in',
      `${base}.csr`,
      '-CA',
      this.ca.cert,
      '-CAkey',
      this.ca.key,
      '-set_serial',
      String(Date.now() * 1000 + this.serial),
      '-days',
      '2',
      '-out',
      `${base}.crt`,
      '-extfile',
      extFile,
    ]);
    return read(`${base}.crt`, `${base}.key`);
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function read(cert: string, key: string): Issued {
  return { cert, key, certPem: readFileSync(cert, 'utf8'), keyPem: readFileSync(key, 'utf8') };
}

function openssl(args: readonly string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}
