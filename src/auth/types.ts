import type { IncomingMessage } from 'node:http';
import type { RouteConfig } from '../config/schema.js';

/** Who is calling, as authentication established it. */
export type Consumer = {
  readonly id: string;
  readonly tier: string;
  readonly roles: readonly string[];
  /** the verified token's claims (JWT only: `${jwt.claim.NAME}` in a transform) */
  readonly claims?: Readonly<Record<string, unknown>>;
};

/**
 * What one authentication method made of a request:
 * - absent: no credential of this kind (another method may apply);
 * - ok: a valid credential;
 * - invalid: a credential that is wrong, expired, revoked... (never echoed back: no token in it);
 * - unavailable: it could not be checked (its store is down): 503, not 401.
 */
export type AuthAttempt =
  | { readonly kind: 'absent' }
  | { readonly kind: 'ok'; readonly consumer: Consumer }
  | { readonly kind: 'invalid'; readonly reason: string }
  | { readonly kind: 'unavailable'; readonly reason: string };

export type AuthMethod = 'jwt' | 'apiKey' | 'mtls';

export interface Authenticator {
  readonly method: AuthMethod;
  /** the WWW-Authenticate challenge for a 401 */
  readonly challenge: string;
  /**
   * the challenge when this method's credential was there but `invalid` (RFC 6750 §3:
   * `error="invalid_token"`); `challenge` when absent
   */
  readonly invalidChallenge?: string;
  authenticate(req: IncomingMessage): AuthAttempt | Promise<AuthAttempt>;
  /** waits (bounded) until keys are loaded */
  ready?(): Promise<void>;
  /** its `/readyz` checks, for a runtime serving `routes` (none when absent) */
  readiness?(routes: readonly RouteConfig[]): Record<string, boolean | 'degraded'>;
  /** forgets what it cached about one credential id (a key revoked through the admin API) */
  invalidate?(id: string): void;
  close(): Promise<void>;
}

export const ABSENT: AuthAttempt = Object.freeze({ kind: 'absent' });
