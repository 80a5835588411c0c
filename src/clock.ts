/**
 * The one clock the gateway reads time from, injected so tests move time instead of sleeping.
 * - `now()`: monotonic ms (performance.now) for every duration the gateway measures itself
 *   (cache TTLs, cooldowns, a breaker's open period, ejections, the retry budget, deadlines): a
 *   wall-clock step (NTP, a VM resumed) neither stretches nor cuts them.
 * - `wall()`: ms since the epoch (Date.now), only where a time is compared with one stated
 *   elsewhere in wall-clock time: a token's `exp`, `nbf` and `iat`.
 */
export interface Clock {
  now(): number;
  wall(): number;
}

export const systemClock: Clock = Object.freeze({
  now: () => performance.now(),
  wall: () => Date.now(),
});
