/** Where verification keys come from: a JWKS endpoint (jwks.ts) or PEM files (pem.ts). */
import type { CryptoKey, JWSHeaderParameters, KeyObject } from 'jose';

export type VerifyKey = CryptoKey | KeyObject;

/**
 * - keys: the keys that may have signed a token with this header (its `alg` and `kid`);
 * - none: no key matches (an unknown `kid`, a key of another type): the token is invalid;
 * - unavailable: no key set was ever loaded, so nothing can be said: 503, not 401.
 */
export type KeyLookup =
  | { readonly kind: 'keys'; readonly keys: readonly VerifyKey[] }
  | { readonly kind: 'none' }
  | { readonly kind: 'unavailable' };

export interface KeySource {
  /** only `alg` and `kid` of the header are looked at; never `jku`, `x5u`, `jwk` or `x5c` */
  lookup(header: JWSHeaderParameters): Promise<KeyLookup>;
  /** loads the keys; bounded */
  ready(): Promise<void>;
  /** called when a key that was there is gone (cached verifications must be dropped) */
  onKeysRemoved(listener: () => void): void;
  /**
   * Bumped each time keys are removed (before the listeners run). A verification reads it before
   * its lookup: if it moved meanwhile, the key that verified may be withdrawn, so the result is
   * checked again and never cached.
   */
  readonly generation: number;
  /** a key set is loaded: false only while a JWKS endpoint has never answered */
  readonly loaded: boolean;
  close(): void;
}

/** at most this many keys are tried for one token (same `alg`, no `kid`) */
export const MAX_CANDIDATES = 4;
