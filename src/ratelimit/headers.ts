/** The rate-limit response headers: IETF httpapi draft fields and the legacy X-RateLimit-*. */
import type { Decision } from './decision.js';

export type HeaderMode = 'draft' | 'legacy' | 'both' | 'none';

/** Appends the headers for `decision` to a flat [name, value, ...] list. */
export function appendRateLimitHeaders(out: string[], decision: Decision, mode: HeaderMode): void {
  if (mode === 'none' || decision.policies.length === 0) return;
  const tight = decision.policies[decision.tightest];
  if (tight === undefined) return;
  if (mode !== 'legacy') {
    out.push(
      'ratelimit-policy',
      decision.policies.map((p) => `"${p.name}";q=${p.quota};w=${p.windowSec}`).join(', '),
    );
    out.push('ratelimit', `"${tight.name}";r=${tight.remaining};t=${tight.resetSec}`);
  }
  if (mode !== 'draft') {
    out.push(
      'x-ratelimit-limit',
      String(tight.quota),
      'x-ratelimit-remaining',
      String(tight.remaining),
      'x-ratelimit-reset',
      String(tight.resetSec),
    );
  }
}
