/** JWT bearer tokens (jose). Being written: see issue 4. */
import type { GatewayConfig, JwtConfig } from '../../config/schema.js';
import type { Logger } from '../../observability/logger.js';
import type { Authenticator } from '../types.js';

export function createJwtAuthenticator(
  _jwt: JwtConfig,
  _config: GatewayConfig,
  _logger: Logger,
): Authenticator {
  throw new Error('auth.jwt is not available yet');
}
