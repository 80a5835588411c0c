/** The authenticators of one runtime, created from `auth` when some route uses them. */
import type { GatewayConfig, RouteConfig } from '../config/schema.js';
import type { Logger } from '../observability/logger.js';
import { createApiKeyAuthenticator } from './api-keys/authenticator.js';
import { createJwtAuthenticator } from './jwt/authenticator.js';
import type { AuthMethod, Authenticator } from './types.js';

export type Authenticators = Readonly<Record<AuthMethod, Authenticator | null>>;

export const NO_AUTHENTICATORS: Authenticators = Object.freeze({ jwt: null, apiKey: null });

/** `reuse`: authenticators to take over instead of building new ones (their settings are unchanged). */
export function createAuthenticators(
  config: GatewayConfig,
  logger: Logger,
  reuse: Partial<Authenticators> = {},
): Authenticators {
  const used = new Set(config.routes.flatMap((r) => r.auth ?? []));
  return {
    jwt:
      used.has('jwt') && config.auth?.jwt
        ? (reuse.jwt ?? createJwtAuthenticator(config.auth.jwt, config, logger))
        : null,
    apiKey:
      used.has('apiKey') && config.auth?.apiKey
        ? (reuse.apiKey ?? createApiKeyAuthenticator(config.auth.apiKey, config, logger))
        : null,
  };
}

export async function closeAuthenticators(a: Authenticators): Promise<void> {
  await Promise.all([a.jwt?.close(), a.apiKey?.close()]);
}

export async function readyAuthenticators(a: Authenticators): Promise<void> {
  await Promise.all([a.jwt?.ready?.(), a.apiKey?.ready?.()]);
}

/**
 * Readiness checks (`/readyz?verbose`) of the authenticators. `jwtKeys` while no JWT key set was
 * ever loaded (a JWKS endpoint that has not answered yet; every bearer token gets 503):
 * - `false` (not ready) when every route needs JWT (`auth: [jwt]`): this instance can serve
 *   nothing, and another one that has keys should get the traffic;
 * - `'degraded'` (still ready) otherwise: public routes and API keys still work here, and taking
 *   the instance out would refuse them too.
 */
export function authReadiness(
  a: Authenticators,
  routes: readonly RouteConfig[],
): Record<string, boolean | 'degraded'> {
  if (a.jwt === null || a.jwt.usable === undefined) return {};
  if (a.jwt.usable()) return { jwtKeys: true };
  const jwtOnly =
    routes.length > 0 &&
    routes.every((r) => (r.auth ?? []).length > 0 && (r.auth ?? []).every((m) => m === 'jwt'));
  return { jwtKeys: jwtOnly ? false : 'degraded' };
}
