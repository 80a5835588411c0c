/**
 * Verifies a bearer JWT and maps its claims to a consumer:
 * - the token is a compact JWS of at most `maxTokenBytes`;
 * - `alg` must be one of the configured algorithms (all asymmetric): never chosen by the token,
 *   so `none` (any casing) and HS* are refused before any key is looked up;
 * - the key comes from the key source by `alg` and `kid` only;
 * - jose checks the signature, `iss`, `aud`, `exp` (required when `requireExp`), `nbf`, with
 *   `clockTolerance`; `sub` is required and becomes the consumer id;
 * - a verified token is cached (by its SHA-256) until its `exp`, at most `cacheTtlMs`.
 * Reasons are short codes: never the token, never a claim value.
 */
import { decodeProtectedHeader, jwtVerify, type JWTPayload, type JWTVerifyOptions } from 'jose';
import type { JwtConfig } from '../../config/schema.js';
import type { AuthAttempt, Consumer } from '../types.js';
import { looksLikeJws } from './bearer.js';
import type { KeySource } from './keys.js';
import { TokenCache } from './token-cache.js';

export type VerifierTuning = {
  readonly maxTokenBytes: number;
  readonly cacheEntries: number;
  readonly cacheTtlMs: number;
};

export const DEFAULT_VERIFIER_TUNING: VerifierTuning = {
  maxTokenBytes: 8 * 1024,
  cacheEntries: 10_000,
  cacheTtlMs: 5 * 60_000,
};

/** role names forwarded upstream in X-Consumer-Roles: no comma, no space, no control character */
const ROLE_NAME = /^[\x21-\x2b\x2d-\x7e]{1,128}$/;
const MAX_ROLES = 64;

export class JwtVerifier {
  readonly cache: TokenCache;
  private readonly algorithms: ReadonlySet<string>;
  private readonly options: JWTVerifyOptions;

  constructor(
    private readonly jwt: JwtConfig,
    private readonly keys: KeySource,
    private readonly tuning: VerifierTuning = DEFAULT_VERIFIER_TUNING,
  ) {
    this.cache = new TokenCache(tuning.cacheEntries, tuning.cacheTtlMs);
    this.algorithms = new Set(jwt.algorithms);
    this.options = {
      algorithms: [...jwt.algorithms],
      clockTolerance: Math.floor(jwt.clockTolerance / 1000),
      requiredClaims: jwt.requireExp ? ['sub', 'exp'] : ['sub'],
      ...(jwt.issuer === undefined ? {} : { issuer: jwt.issuer }),
      ...(jwt.audience === undefined ? {} : { audience: jwt.audience }),
    };
    keys.onKeysRemoved(() => this.cache.clear());
  }

  /** the result when it is known without a signature check (size, shape, cache), else null */
  quick(token: string): AuthAttempt | null {
    if (token.length > this.tuning.maxTokenBytes) return invalid('token_too_large');
    if (!looksLikeJws(token)) return invalid('malformed');
    const hit = this.cache.get(TokenCache.key(token), Date.now());
    return hit === null ? null : { kind: 'ok', consumer: hit };
  }

  async verify(token: string): Promise<AuthAttempt> {
    return this.quick(token) ?? this.full(token);
  }

  /** the signature and claims check, for a token `quick` said nothing about */
  async full(token: string): Promise<AuthAttempt> {
    const cacheKey = TokenCache.key(token);
    const now = Date.now();

    let header;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      return invalid('malformed');
    }
    if (typeof header.alg !== 'string' || !this.algorithms.has(header.alg)) return invalid('alg_not_allowed');
    if (header.crit !== undefined) return invalid('crit_not_supported');
    if (header.kid !== undefined && (typeof header.kid !== 'string' || header.kid.length > 256))
      return invalid('bad_kid');

    const lookup = await this.keys.lookup({
      alg: header.alg,
      ...(header.kid === undefined ? {} : { kid: header.kid }),
    });
    if (lookup.kind === 'unavailable') return { kind: 'unavailable', reason: 'jwks_unavailable' };
    if (lookup.kind === 'none') return invalid('unknown_key');

    let payload: JWTPayload | null = null;
    let reason = 'bad_signature';
    for (const key of lookup.keys) {
      try {
        payload = (await jwtVerify(token, key, this.options)).payload;
        break;
      } catch (err) {
        reason = reasonOf(err);
        // jose checks the claims only after a good signature: no other key will do better
        if (CLAIMS_ERRORS.has((err as { code?: string }).code ?? '')) break;
      }
    }
    if (payload === null) return invalid(reason);
    const consumer = this.consumerOf(payload);
    if (consumer === null) return invalid('bad_sub');
    this.cache.set(cacheKey, consumer, typeof payload.exp === 'number' ? payload.exp * 1000 : null, now);
    return { kind: 'ok', consumer };
  }

  private consumerOf(payload: JWTPayload): Consumer | null {
    const sub = payload.sub;
    if (typeof sub !== 'string' || sub.length === 0 || sub.length > 256) return null;
    const rolesClaim = claim(payload, this.jwt.rolesClaim);
    const roles = Array.isArray(rolesClaim)
      ? rolesClaim.filter((r): r is string => typeof r === 'string' && ROLE_NAME.test(r)).slice(0, MAX_ROLES)
      : [];
    const tierClaim = claim(payload, this.jwt.tierClaim);
    const tier = typeof tierClaim === 'string' && /^[\x21-\x7e]{1,64}$/.test(tierClaim) ? tierClaim : '';
    return Object.freeze({ id: sub, tier, roles: Object.freeze(roles) });
  }
}

/**
 * A claim by name; when there is no claim of that exact name, a dotted path into nested objects
 * (`realm_access.roles` for Keycloak). Exact names first, so Auth0's namespaced claims
 * (`https://example.com/roles`) work as they are.
 */
export function claim(payload: JWTPayload, name: string): unknown {
  if (Object.hasOwn(payload, name)) return payload[name];
  let node: unknown = payload;
  for (const part of name.split('.')) {
    if (typeof node !== 'object' || node === null || Array.isArray(node) || !Object.hasOwn(node, part))
      return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

const CLAIMS_ERRORS: ReadonlySet<string> = new Set([
  'ERR_JWT_EXPIRED',
  'ERR_JWT_CLAIM_VALIDATION_FAILED',
  'ERR_JWT_INVALID',
]);

function invalid(reason: string): AuthAttempt {
  return { kind: 'invalid', reason };
}

function reasonOf(err: unknown): string {
  const code = (err as { code?: string }).code;
  const claimName = (err as { claim?: string }).claim;
  switch (code) {
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return 'bad_signature';
    case 'ERR_JWT_EXPIRED':
      return 'expired';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      return claimName === undefined ? 'bad_claims' : `bad_${claimName}`;
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return 'alg_not_allowed';
    default:
      return 'malformed';
  }
}
