import type { Clock } from '../../src/clock.js';

/** A Clock whose monotonic reading is `now()` (the test moves it); the wall clock is the host's. */
export const clockAt = (now: () => number): Clock => ({ now, wall: () => Date.now() });
