/** API keys. Being written: see issue 4. */
import type { ApiKeyConfig, GatewayConfig } from '../../config/schema.js';
import type { Logger } from '../../observability/logger.js';
import type { Authenticator } from '../types.js';

export function createApiKeyAuthenticator(
  _apiKey: ApiKeyConfig,
  _config: GatewayConfig,
  _logger: Logger,
): Authenticator {
  throw new Error('auth.apiKey is not available yet');
}
