/**
 * The two clocks of src/auth/jwt, injectable for tests:
 * - `wallMs` (Date.now) for what a token states in wall-clock time: `exp`, `nbf`, `iat`;
 * - `monoMs` (performance.now) for every duration the gateway measures itself (cache TTLs,
 *   refetch cooldowns), so a wall-clock step (NTP, a VM resumed) neither stretches nor cuts them.
 */
export type JwtClock = {
  readonly wallMs: () => number;
  readonly monoMs: () => number;
};

export const SYSTEM_CLOCK: JwtClock = Object.freeze({
  wallMs: () => Date.now(),
  monoMs: () => performance.now(),
});
