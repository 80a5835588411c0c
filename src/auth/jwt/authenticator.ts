/**
 * JWT bearer tokens (jose): `Authorization: Bearer <jwt>` only; keys from `jwksUrl` or
 * `publicKeys`. See verifier.ts for what is checked and jwks.ts for key caching and rotation.
 * No bearer header: `absent` (another method may apply); a bad token: `invalid` (401); bearer
 * tokens while no key set was ever loaded from the JWKS endpoint: `unavailable` (503). A 401 for
 * a token that was there but bad says `error="invalid_token"` (RFC 6750 §3); one for no token at
 * all is the bare challenge (§3.1: no error code when no credential was sent).
 */
import type { GatewayConfig, JwtConfig, RouteConfig } from '../../config/schema.js';
import type { Logger } from '../../observability/logger.js';
import { ABSENT, type AuthAttempt, type Authenticator } from '../types.js';
import { bearerToken } from './bearer.js';
import { systemClock, type Clock } from '../../clock.js';
import { DEFAULT_JWKS_TUNING, JwksKeySource, type JwksTuning } from './jwks.js';
import type { KeySource } from './keys.js';
import { PemKeySource } from './pem.js';
import { TokenRevocations } from './revocation.js';
import { DEFAULT_VERIFIER_TUNING, JwtVerifier, type VerifierTuning } from './verifier.js';

export type JwtTuning = {
  readonly jwks?: JwksTuning;
  readonly verifier?: VerifierTuning;
  readonly clock?: Clock;
  /** the denylist of the authenticator this one replaces (revocation.ts: taken over) */
  readonly revocationSeed?: TokenRevocations | null;
};

export const JWT_CHALLENGE = 'Bearer realm="gatehouse"';
export const JWT_INVALID_TOKEN_CHALLENGE = `${JWT_CHALLENGE}, error="invalid_token"`;

export function createJwtAuthenticator(
  jwt: JwtConfig,
  config: GatewayConfig,
  logger: Logger,
  tuning: JwtTuning = {},
): Authenticator & {
  readonly verifier: JwtVerifier;
  readonly keys: KeySource;
  readonly revocation: TokenRevocations | null;
} {
  // the config checks refuse anything else; this guards a config built in code
  for (const alg of jwt.algorithms) {
    if (!/^(RS|PS|ES)(256|384|512)$|^EdDSA$/.test(alg))
      throw new Error(`auth.jwt.algorithms: ${alg} is not supported (asymmetric algorithms only)`);
  }
  const clock = tuning.clock ?? systemClock;
  let keys: KeySource;
  if (jwt.jwksUrl !== undefined && jwt.publicKeys === undefined) {
    keys = new JwksKeySource(jwt.jwksUrl, logger, tuning.jwks ?? DEFAULT_JWKS_TUNING, clock);
  } else if (jwt.publicKeys !== undefined && jwt.jwksUrl === undefined) {
    keys = new PemKeySource(jwt.publicKeys);
  } else {
    throw new Error('auth.jwt: exactly one of jwksUrl or publicKeys is required');
  }
  const revocation = revocationOf(jwt, config, logger, clock, tuning.revocationSeed ?? null);
  const verifier = new JwtVerifier(jwt, keys, tuning.verifier ?? DEFAULT_VERIFIER_TUNING, clock, revocation);
  const log = logger.child({ auth: 'jwt' });
  return {
    method: 'jwt',
    challenge: JWT_CHALLENGE,
    invalidChallenge: JWT_INVALID_TOKEN_CHALLENGE,
    verifier,
    keys,
    revocation,
    authenticate(req): Promise<AuthAttempt> | AuthAttempt {
      const token = bearerToken(req);
      if (token === null) return ABSENT;
      const quick = verifier.quick(token, req.socket); // a cached token is answered synchronously
      if (quick !== null) {
        if (quick.kind === 'invalid') log.debug({ reason: quick.reason }, 'bearer token refused');
        return quick;
      }
      return verifier.full(token).then((attempt) => {
        if (attempt.kind === 'invalid') log.debug({ reason: attempt.reason }, 'bearer token refused');
        return attempt;
      });
    },
    ready: () => Promise.all([keys.ready(), revocation?.ready()]).then(() => undefined),
    readiness: (routes) => ({ ...jwtReadiness(keys.loaded, routes), ...revocation?.readiness() }),
    close() {
      keys.close();
      verifier.cache.clear();
      return revocation?.close() ?? Promise.resolve();
    },
  };
}

/** The denylist of `auth.jwt.revocation`, in the top-level `redis` (the config checks require it). */
function revocationOf(
  jwt: JwtConfig,
  config: GatewayConfig,
  logger: Logger,
  clock: Clock,
  seed: TokenRevocations | null,
): TokenRevocations | null {
  const settings = jwt.revocation;
  if (settings === undefined || !settings.enabled) return null;
  const redis = config.redis;
  if (redis === undefined) throw new Error('auth.jwt.revocation: needs `redis`');
  return new TokenRevocations({
    redis: redis.cluster ? { cluster: redis.cluster } : { url: redis.url ?? 'redis://127.0.0.1:6379' },
    config: settings,
    toleranceMs: jwt.clockTolerance,
    logger,
    clock,
    seed,
  });
}

/**
 * The `/readyz` check of JWT authentication: `jwtKeys`, while no key set was ever loaded (a
 * JWKS endpoint that has not answered yet; every bearer token gets 503):
 * - `false` (not ready) when every route needs JWT (`auth: [jwt]`): this instance can serve
 *   nothing, and another one that has keys should get the traffic;
 * - `'degraded'` (still ready) otherwise: public routes and API keys still work here, and taking
 *   the instance out would refuse them too.
 */
export function jwtReadiness(
  loaded: boolean,
  routes: readonly RouteConfig[],
): Record<string, boolean | 'degraded'> {
  if (loaded) return { jwtKeys: true };
  const jwtOnly =
    routes.length > 0 &&
    routes.every((r) => (r.auth ?? []).length > 0 && (r.auth ?? []).every((m) => m === 'jwt'));
  return { jwtKeys: jwtOnly ? false : 'degraded' };
}
