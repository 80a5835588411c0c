/**
 * What the upstream of an authenticated request learns, the same for plain requests and
 * upgrades (both run the authenticate stage on the same upstream header list):
 * - `X-Consumer-Id`, `-Tier`, `-Roles` (client-sent ones were removed by the header scan);
 * - a credential only if the gateway verified it: `Authorization: Bearer <token>` when a JWT
 *   authenticated the request and `auth.forwardCredentials` is on, else no `Authorization`;
 * - never the API key header (nor its `_` spelling): the key is the gateway's credential.
 * The header scan already refused a request with more than one `Authorization`.
 */
import type { Consumer } from '../../auth/types.js';

export type CredentialRules = {
  /** the API key header, lower case and with `-` for `_`; null when API keys are not configured */
  readonly keyHeader: string | null;
  /** auth.forwardCredentials */
  readonly forwardJwt: boolean;
};

/**
 * Rewrites `headers` (the flat upstream list) in place for an authenticated consumer.
 * `verifiedBearer`: the token the JWT method verified, or null when another method
 * authenticated the request.
 */
export function forwardIdentity(
  headers: string[],
  consumer: Consumer,
  verifiedBearer: string | null,
  rules: CredentialRules,
): void {
  const bearer = rules.forwardJwt ? verifiedBearer : null;
  const key = rules.keyHeader;
  for (let i = headers.length - 2; i >= 0; i -= 2) {
    const name = headers[i] as string;
    if (name === 'authorization') {
      // Only an Authorization still in the list is replaced: one named by `Connection` stays out.
      if (bearer !== null) headers[i + 1] = `Bearer ${bearer}`;
      else headers.splice(i, 2);
    } else if (key !== null && (name === key || (name.includes('_') && name.replaceAll('_', '-') === key))) {
      headers.splice(i, 2);
    }
  }
  headers.push(
    'x-consumer-id',
    headerSafe(consumer.id),
    'x-consumer-tier',
    headerSafe(consumer.tier),
    'x-consumer-roles',
    headerSafe(consumer.roles.join(',')),
  );
}

/** Identity values come from tokens and keys: anything outside printable ASCII is %-encoded. */
const headerSafe = (v: string): string => (/^[\x20-\x7e]*$/.test(v) ? v : encodeURIComponent(v));
