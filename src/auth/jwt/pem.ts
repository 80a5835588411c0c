/**
 * Keys from PEM files (`auth.jwt.publicKeys`): SPKI public keys or X.509 certificates, read
 * once at startup. A private key is refused: the gateway only verifies. Paths are relative to
 * the working directory.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { JWSHeaderParameters } from 'jose';
import { MAX_CANDIDATES, type KeyLookup, type KeySource } from './keys.js';

export async function readPublicKey(file: string): Promise<KeyObject> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new Error(
      `auth.jwt.publicKeys: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`,
    );
  }
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
    throw new Error(`auth.jwt.publicKeys: ${file} holds a private key; give the public key only`);
  }
  try {
    return createPublicKey(text);
  } catch {
    throw new Error(`auth.jwt.publicKeys: ${file} is not a PEM public key or certificate`);
  }
}

/** Which key types an algorithm can be verified with. */
export function keyFits(key: KeyObject, alg: string): boolean {
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails;
  if (alg.startsWith('RS')) return type === 'rsa';
  if (alg.startsWith('PS')) return type === 'rsa' || type === 'rsa-pss';
  if (alg === 'ES256') return type === 'ec' && details?.namedCurve === 'prime256v1';
  if (alg === 'ES384') return type === 'ec' && details?.namedCurve === 'secp384r1';
  if (alg === 'ES512') return type === 'ec' && details?.namedCurve === 'secp521r1';
  if (alg === 'EdDSA') return type === 'ed25519' || type === 'ed448';
  return false;
}

export class PemKeySource implements KeySource {
  private keys: KeyObject[] | null = null;
  private loading: Promise<void> | null = null;
  /** the files are read once: keys are never removed while running */
  readonly generation = 0;

  constructor(private readonly files: readonly string[]) {}

  get loaded(): boolean {
    return this.keys !== null;
  }

  ready(): Promise<void> {
    this.loading ??= Promise.all(this.files.map(readPublicKey)).then((keys) => {
      this.keys = keys;
    });
    return this.loading;
  }

  lookup(header: JWSHeaderParameters): Promise<KeyLookup> {
    if (this.keys === null) return Promise.resolve({ kind: 'unavailable' });
    const alg = header.alg ?? '';
    const fit = this.keys.filter((k) => keyFits(k, alg)).slice(0, MAX_CANDIDATES);
    return Promise.resolve(fit.length === 0 ? { kind: 'none' } : { kind: 'keys', keys: fit });
  }

  onKeysRemoved(): void {
    // the files are read once: keys are never removed while running
  }

  close(): void {}
}
