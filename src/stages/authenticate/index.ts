/**
 * Authentication: the route's methods (`auth: [jwt, apiKey]`) are tried in order; the first
 * valid credential makes the consumer. No valid credential: 401 `unauthenticated` with a
 * `WWW-Authenticate` challenge per method (its `invalidChallenge` when it saw a credential and
 * refused it); a method whose store is down and no valid
 * credential otherwise: 503 `store_unavailable` (a cached key still works meanwhile).
 * An authenticated request's upstream headers then carry the consumer and only the credential
 * the gateway verified, and the `X-Consumer-*` headers (upstream-identity.ts); upgrades run
 * this stage too. The consumer's id (and tier) go to the access log.
 */
import type { Authenticators } from '../../auth/index.js';
import { bearerToken } from '../../auth/jwt/bearer.js';
import { TOKEN_REVOKED } from '../../auth/jwt/revocation.js';
import type { AuthAttempt, AuthMethod, Authenticator } from '../../auth/types.js';
import { problem, type Problem } from '../../problems/registry.js';
import { METRICS } from '../metrics.js';
import { defineStage, Dependency, type RequestContext, type StageOutcome } from '../stage.js';
import { forwardIdentity, type CredentialRules } from './upstream-identity.js';

/** The authenticators of the runtime, one per configured method. */
export const AUTHENTICATORS = new Dependency<Authenticators>('authenticators');

type Section = { readonly methods: readonly AuthMethod[]; readonly rules: CredentialRules };

export const authenticate = defineStage<Section>({
  name: 'authenticate',
  order: 200,
  section(route, config) {
    const methods = route.auth ?? [];
    if (methods.length === 0) return null;
    // The API key is a credential for the gateway, not for the upstream: never forwarded on a
    // route with auth, whichever method authenticated the request.
    const keyHeader = config.auth?.apiKey?.header.toLowerCase().replaceAll('_', '-') ?? null;
    return { methods, rules: { keyHeader, forwardJwt: config.auth?.forwardCredentials ?? true } };
  },
  create({ methods, rules }, deps, route) {
    const configured = deps.get(AUTHENTICATORS);
    const metrics = deps.get(METRICS);
    const authenticators = methods.map((m) => {
      const a = configured[m];
      if (a === null) throw new Error(`route "${route.name}": auth method ${m} is not configured`); // refused by checks
      return a;
    });
    // counted per method and outcome kind: a small, fixed label set (never the token or key)
    const noop = { inc: () => undefined };
    const failures = authenticators.map((a) => ({
      absent: metrics?.authFailures.labels(a.method, 'absent') ?? noop,
      invalid: metrics?.authFailures.labels(a.method, 'invalid') ?? noop,
      unavailable: metrics?.authFailures.labels(a.method, 'unavailable') ?? noop,
      revoked: metrics?.authFailures.labels(a.method, 'revoked') ?? noop,
    }));
    // one 401 per set of methods whose credential was there but invalid (bit i: method i), built
    // once: such a method answers with its `invalidChallenge` (RFC 6750 §3 `error="invalid_token"`)
    const challengesOf = (invalidMask: number): string[] => {
      const challenges: string[] = [];
      authenticators.forEach((a, i) =>
        challenges.push(
          'www-authenticate',
          (invalidMask & (1 << i)) !== 0 ? (a.invalidChallenge ?? a.challenge) : a.challenge,
        ),
      );
      return challenges;
    };
    const unauthenticated = Array.from({ length: 1 << authenticators.length }, (_, invalidMask) =>
      problem('unauthenticated', 'valid credentials are required', challengesOf(invalidMask)),
    );
    // a revoked bearer token (auth.jwt.revocation) is told apart: the client must get a new one
    const revoked = unauthenticated.map((_, invalidMask) =>
      problem('token_revoked', 'the token has been revoked', challengesOf(invalidMask)),
    );
    const unavailable = problem(
      'store_unavailable',
      'credentials cannot be checked right now (the key store or the JWKS endpoint is unavailable)',
      ['retry-after', '1'],
    );
    const run = (
      ctx: RequestContext,
      from: number,
      sawUnavailable: boolean,
      invalidMask: number,
      sawRevoked: boolean,
    ): StageOutcome | Promise<StageOutcome> => {
      for (let i = from; i < authenticators.length; i++) {
        const attempt = (authenticators[i] as Authenticator).authenticate(ctx.req);
        if (attempt instanceof Promise) {
          return attempt.then((a) => {
            const done = settle(ctx, a, i);
            if (done !== null) return done;
            const invalid = a.kind === 'invalid' ? invalidMask | (1 << i) : invalidMask;
            const wasRevoked = sawRevoked || (a.kind === 'invalid' && a.reason === TOKEN_REVOKED);
            return run(ctx, i + 1, sawUnavailable || a.kind === 'unavailable', invalid, wasRevoked);
          });
        }
        const done = settle(ctx, attempt, i);
        if (done !== null) return done;
        if (attempt.kind === 'unavailable') sawUnavailable = true;
        if (attempt.kind === 'invalid') {
          invalidMask |= 1 << i;
          if (attempt.reason === TOKEN_REVOKED) sawRevoked = true;
        }
      }
      if (sawUnavailable) return unavailable;
      return (sawRevoked ? revoked[invalidMask] : unauthenticated[invalidMask]) as Problem;
    };
    /** undefined: authenticated; null: try the next method */
    const settle = (ctx: RequestContext, a: AuthAttempt, i: number): Problem | undefined | null => {
      if (a.kind !== 'ok') {
        failures[i]?.[a.kind === 'invalid' && a.reason === TOKEN_REVOKED ? 'revoked' : a.kind].inc();
        return null;
      }
      ctx.consumer = a.consumer;
      // the same function the JWT authenticator read the token with: what it verified
      const verified = authenticators[i]?.method === 'jwt' ? bearerToken(ctx.req) : null;
      forwardIdentity(ctx.upstreamHeaders, a.consumer, verified, rules);
      return undefined;
    };
    return {
      onRequest: (ctx) => run(ctx, 0, false, 0, false),
      onLog(ctx, record) {
        const consumer = ctx.consumer;
        if (consumer === null) return;
        record.consumerId = consumer.id;
        record.tier ??= consumer.tier; // rate limiting, when it counted the request, says which
      },
    };
  },
});
