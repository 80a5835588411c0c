/**
 * Verifies a bearer JWT and maps its claims to a consumer:
 * - the token is a compact JWS of at most `maxTokenBytes`;
 * - `alg` must be one of the configured algorithms (all asymmetric): never chosen by the token,
 *   so `none` (any casing) and HS* are refused before any key is looked up;
 * - `typ`, when `types` is configured, must be one of them;
 * - the key comes from the key source by `alg` and `kid` only;
 * - jose checks the signature, `iss`, `aud`, `exp` (required when `requireExp`), `nbf`, with
 *   `clockTolerance`, and `iat` against `maxTokenAge` when set; an `iat` in the future (beyond
 *   `clockTolerance`) is refused; `sub` is required and becomes the consumer id;
 * - a verified token is cached (by its SHA-256) until its `exp` (and `iat + maxTokenAge`), at
 *   most `cacheTtlMs` (monotonic); never when the key set lost a key during the verification:
 *   that verification is done again against the new set.
 * Reasons are short codes: never the token, never a claim value.
 */
import {
  decodeProtectedHeader,
  jwtVerify,
  type JWSHeaderParameters,
  type JWTPayload,
  type JWTVerifyOptions,
} from 'jose';
import type { JwtConfig } from '../../config/schema.js';
import type { AuthAttempt, Consumer } from '../types.js';
import { looksLikeJws } from './bearer.js';
import { systemClock, type Clock } from '../../clock.js';
import type { KeySource } from './keys.js';
import { MAX_ID_LENGTH, PASS, REVOKED, TOKEN_REVOKED, type RevocationCheck } from './revocation.js';
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
  /** per connection (a socket, weakly held): its last well-formed token and that token's cache key */
  private readonly lastToken = new WeakMap<object, { token: string; key: string }>();
  private readonly algorithms: ReadonlySet<string>;
  private readonly options: JWTVerifyOptions;
  /** normalised (`typ` comparison); null = any `typ`, or none */
  private readonly types: ReadonlySet<string> | null;
  private readonly toleranceS: number;
  private readonly maxTokenAgeS: number | null;

  constructor(
    private readonly jwt: JwtConfig,
    private readonly keys: KeySource,
    private readonly tuning: VerifierTuning = DEFAULT_VERIFIER_TUNING,
    private readonly clock: Clock = systemClock,
    /** the denylist (revocation.ts), checked after the signature or the cache hit; null: none */
    private readonly revocation: RevocationCheck | null = null,
  ) {
    this.cache = new TokenCache(tuning.cacheEntries, tuning.cacheTtlMs);
    this.algorithms = new Set(jwt.algorithms);
    this.types = jwt.types === undefined ? null : new Set(jwt.types.map(normalizeTyp));
    this.toleranceS = Math.floor(jwt.clockTolerance / 1000);
    this.maxTokenAgeS = jwt.maxTokenAge === undefined ? null : jwt.maxTokenAge / 1000;
    this.options = {
      algorithms: [...jwt.algorithms],
      clockTolerance: this.toleranceS,
      requiredClaims: jwt.requireExp ? ['sub', 'exp'] : ['sub'],
      ...(jwt.issuer === undefined ? {} : { issuer: jwt.issuer }),
      ...(jwt.audience === undefined ? {} : { audience: jwt.audience }),
      // jose then requires `iat` and refuses one too old or in the future
      ...(this.maxTokenAgeS === null ? {} : { maxTokenAge: this.maxTokenAgeS }),
    };
    keys.onKeysRemoved(() => this.cache.clear());
  }

  /** the result when it is known without a signature check (size, shape, cache), else null */
  quick(token: string, connection?: object): AuthAttempt | null {
    const key = this.cacheKey(token, connection);
    if (typeof key !== 'string') return key;
    const hit = this.cache.entry(key, this.clock.wall(), this.clock.now());
    if (hit === null) return null;
    if (this.revocation === null) return hit.ok;
    const verdict = this.revocation.check(hit.consumer.id, hit.jti, hit.iat);
    return verdict === PASS ? hit.ok : verdict === REVOKED ? REVOKED_ATTEMPT : DENYLIST_UNKNOWN;
  }

  /**
   * The token's cache key (TokenCache.key), or why it is refused before any lookup. A client on a
   * keep-alive connection sends the same token request after request: the key of the last token
   * seen on `connection` (a socket) is kept with that token, for as long as the connection lives,
   * so a repeat costs a string comparison instead of a SHA-256. Only a token that passed the size
   * and shape checks is kept; the cache itself still never holds a raw token.
   */
  private cacheKey(token: string, connection: object | undefined): string | AuthAttempt {
    const last = connection === undefined ? undefined : this.lastToken.get(connection);
    if (last !== undefined && last.token === token) return last.key;
    if (token.length > this.tuning.maxTokenBytes) return invalid('token_too_large');
    if (!looksLikeJws(token)) return invalid('malformed');
    const key = TokenCache.key(token);
    if (last !== undefined) {
      last.token = token;
      last.key = key;
    } else if (connection !== undefined) this.lastToken.set(connection, { token, key });
    return key;
  }

  async verify(token: string): Promise<AuthAttempt> {
    return this.quick(token) ?? this.full(token);
  }

  /** the signature and claims check, for a token `quick` said nothing about */
  async full(token: string): Promise<AuthAttempt> {
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
    // before the key lookup: a token of another type costs no JWKS refetch
    if (this.types !== null && (typeof header.typ !== 'string' || !this.types.has(normalizeTyp(header.typ))))
      return invalid('bad_typ');
    const keyHeader = { alg: header.alg, ...(header.kid === undefined ? {} : { kid: header.kid }) };

    // A refresh may withdraw the key while the signature is being checked: then a success is
    // neither trusted nor cached, and the check is done once more against the new key set.
    let generation = this.keys.generation;
    let checked = await this.check(token, keyHeader);
    if (checked.kind === 'verified' && this.keys.generation !== generation) {
      generation = this.keys.generation;
      checked = await this.check(token, keyHeader);
    }
    if (checked.kind !== 'verified') return checked;
    const { consumer, notAfterMs, wallNow, jti, iat } = checked;
    // cached even when revoked: the next try of a revoked token costs no signature check
    if (this.keys.generation === generation)
      this.cache.set(TokenCache.key(token), consumer, notAfterMs, wallNow, this.clock.now(), jti, iat);
    if (this.revocation !== null) {
      const verdict = this.revocation.check(consumer.id, jti, iat);
      if (verdict !== PASS) return verdict === REVOKED ? REVOKED_ATTEMPT : DENYLIST_UNKNOWN;
    }
    return { kind: 'ok', consumer };
  }

  /** the key lookup, the signature and the claims */
  private async check(token: string, header: JWSHeaderParameters): Promise<Checked> {
    const lookup = await this.keys.lookup(header);
    if (lookup.kind === 'unavailable') return { kind: 'unavailable', reason: 'jwks_unavailable' };
    if (lookup.kind === 'none') return invalid('unknown_key');

    const wallNow = this.clock.wall();
    const options: JWTVerifyOptions = { ...this.options, currentDate: new Date(wallNow) };
    let payload: JWTPayload | null = null;
    let reason = 'bad_signature';
    for (const key of lookup.keys) {
      try {
        payload = (await jwtVerify(token, key, options)).payload;
        break;
      } catch (err) {
        reason = reasonOf(err);
        // jose checks the claims only after a good signature: no other key will do better
        if (CLAIMS_ERRORS.has((err as { code?: string }).code ?? '')) break;
      }
    }
    if (payload === null) return invalid(reason);
    // jose checks a future `iat` only with maxTokenAge: a token "issued" later than now is
    // forged or from a broken clock, whatever its `exp` says
    const nowS = Math.floor(wallNow / 1000);
    if (typeof payload.iat === 'number' && payload.iat > nowS + this.toleranceS) return invalid('bad_iat');
    const consumer = this.consumerOf(payload);
    if (consumer === null) return invalid('bad_sub');
    return {
      kind: 'verified',
      consumer,
      notAfterMs: this.notAfterMs(payload),
      wallNow,
      // a jti longer than the admin API takes could never be revoked by it: not kept
      jti: typeof payload.jti === 'string' && payload.jti.length <= MAX_ID_LENGTH ? payload.jti : null,
      iat: typeof payload.iat === 'number' && Number.isFinite(payload.iat) ? payload.iat : null,
    };
  }

  /** the wall-clock time (ms) the token stops being valid: its `exp`, `iat + maxTokenAge` */
  private notAfterMs(payload: JWTPayload): number | null {
    let end = typeof payload.exp === 'number' ? payload.exp * 1000 : Infinity;
    if (this.maxTokenAgeS !== null && typeof payload.iat === 'number')
      end = Math.min(end, (payload.iat + this.maxTokenAgeS) * 1000);
    return end === Infinity ? null : end;
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
    return Object.freeze({ id: sub, tier, roles: Object.freeze(roles), claims: Object.freeze(payload) });
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

type Checked =
  | Invalid
  | Extract<AuthAttempt, { kind: 'unavailable' }>
  | {
      readonly kind: 'verified';
      readonly consumer: Consumer;
      readonly notAfterMs: number | null;
      readonly wallNow: number;
      readonly jti: string | null;
      readonly iat: number | null;
    };

const REVOKED_ATTEMPT: AuthAttempt = Object.freeze({ kind: 'invalid', reason: TOKEN_REVOKED });
/** the denylist was never read and `onUnavailable` is `closed` */
const DENYLIST_UNKNOWN: AuthAttempt = Object.freeze({ kind: 'unavailable', reason: 'denylist_unavailable' });

/** `typ` compares case-insensitively, `application/` optional (RFC 7515 §4.1.9) */
function normalizeTyp(typ: string): string {
  const lower = typ.toLowerCase();
  return lower.startsWith('application/') ? lower.slice('application/'.length) : lower;
}

const CLAIMS_ERRORS: ReadonlySet<string> = new Set([
  'ERR_JWT_EXPIRED',
  'ERR_JWT_CLAIM_VALIDATION_FAILED',
  'ERR_JWT_INVALID',
]);

type Invalid = Extract<AuthAttempt, { kind: 'invalid' }>;

function invalid(reason: string): Invalid {
  return { kind: 'invalid', reason };
}

function reasonOf(err: unknown): string {
  const code = (err as { code?: string }).code;
  const claimName = (err as { claim?: string }).claim;
  switch (code) {
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED':
      return 'bad_signature';
    case 'ERR_JWT_EXPIRED':
      return claimName === 'iat' ? 'too_old' : 'expired';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED':
      return claimName === undefined ? 'bad_claims' : `bad_${claimName}`;
    case 'ERR_JOSE_ALG_NOT_ALLOWED':
      return 'alg_not_allowed';
    default:
      return 'malformed';
  }
}
