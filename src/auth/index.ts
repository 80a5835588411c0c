/** The authenticators of one runtime, created from `auth` when some route uses them. */
import type { GatewayConfig } from '../config/schema.js';
import type { Logger } from '../observability/logger.js';
import { createApiKeyAuthenticator } from './api-keys/authenticator.js';
import { createJwtAuthenticator } from './jwt/authenticator.js';
import { createMtlsAuthenticator } from './mtls/authenticator.js';
import type { AuthMethod, Authenticator } from './types.js';

export type Authenticators = Readonly<Record<AuthMethod, Authenticator | null>>;

export const NO_AUTHENTICATORS: Authenticators = Object.freeze({ jwt: null, apiKey: null, mtls: null });

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
    // built from the config alone, nothing to keep: made anew on every reload
    mtls: used.has('mtls') && config.auth?.mtls ? createMtlsAuthenticator(config.auth.mtls) : null,
  };
}

export async function closeAuthenticators(a: Authenticators): Promise<void> {
  await Promise.all([a.jwt?.close(), a.apiKey?.close()]);
}

export async function readyAuthenticators(a: Authenticators): Promise<void> {
  await Promise.all([a.jwt?.ready?.(), a.apiKey?.ready?.()]);
}
