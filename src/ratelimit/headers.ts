/** The rate-limit response headers: IETF httpapi draft fields and the legacy X-RateLimit-*. */
import type { Decision, PolicyView } from './decision.js';

export type HeaderMode = 'draft' | 'legacy' | 'both' | 'none';

/** Appends the headers for `decision` to a flat [name, value, ...] list. */
export function appendRateLimitHeaders(out: string[], decision: Decision, mode: HeaderMode): void {
  if (mode === 'none' || decision.policies.length === 0) return;
  const tight = decision.policies[decision.tightest];
  if (tight === undefined) return;
  if (mode !== 'legacy') {
    out.push('ratelimit-policy', policyHeader(decision.policies));
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

/**
 * The last RateLimit-Policy value made, and the policies it was made of: a tier's policies (name,
 * quota, window) are the same request after request, so the value is rebuilt only when they
 * change (another tier, a quota's month of another length). Only the fields it shows are compared.
 */
let lastPolicies: Array<{ name: string; quota: number; windowSec: number }> = [];
let lastPolicyHeader = '';

export function policyHeader(policies: readonly PolicyView[]): string {
  let same = policies.length === lastPolicies.length;
  for (let i = 0; same && i < policies.length; i++) {
    const p = policies[i] as PolicyView;
    const q = lastPolicies[i] as { name: string; quota: number; windowSec: number };
    same = p.name === q.name && p.quota === q.quota && p.windowSec === q.windowSec;
  }
  if (same) return lastPolicyHeader;
  lastPolicies = policies.map(({ name, quota, windowSec }) => ({ name, quota, windowSec }));
  lastPolicyHeader = policies.map((p) => `"${p.name}";q=${p.quota};w=${p.windowSec}`).join(', ');
  return lastPolicyHeader;
}
