/**
 * Passive health (outlier ejection): a target that fails `consecutiveErrors` times in a row
 * (connection errors, timeouts, 5xx) is taken out of balancing for a while. The ejection time
 * doubles with each ejection in a row and shrinks back by one step for every `ejectFor` the
 * target then spends without being ejected, so a flapping target stays out longer while one that
 * recovered is forgiven. Unlike checks that only ever eject, the ejection ends by itself: a
 * service heals without active health checks. Pure functions; service.ts owns the timers.
 */
import type { PassiveHealthConfig } from '../config/schema.js';

export type PassiveState = {
  consecutiveFailures: number;
  /** ejections in a row (decays while the target behaves) */
  ejections: number;
  /** when the last ejection ended (0 = never ejected) */
  backAt: number;
};

/** How long the next ejection lasts; updates `state.ejections`. */
export function nextEjection(config: PassiveHealthConfig, state: PassiveState, now: number): number {
  const forgiven = state.backAt === 0 ? 0 : Math.floor((now - state.backAt) / Math.max(1, config.ejectFor));
  state.ejections = Math.max(0, state.ejections - forgiven) + 1;
  return Math.min(config.maxEjectFor, config.ejectFor * 2 ** (state.ejections - 1));
}

/** May one more of `total` targets be ejected while `ejected` already are? */
export function mayEject(config: PassiveHealthConfig, ejected: number, total: number): boolean {
  return ejected + 1 <= Math.floor((total * config.maxEjectedPercent) / 100);
}
