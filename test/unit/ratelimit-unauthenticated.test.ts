/** The per-process memory of addresses over their failed-authentication limit. */
import { describe, expect, it } from 'vitest';
import { RefusedAddresses } from '../../src/stages/rate-limit/unauthenticated.js';

describe('RefusedAddresses', () => {
  it('refuses an address until its time is up, then forgets it', () => {
    let now = 1000;
    const refused = new RefusedAddresses(() => now, 10);
    refused.refuse('ip:192.0.2.1', 3000);
    expect(refused.remainingMs('ip:192.0.2.1')).toBe(3000);
    expect(refused.remainingMs('ip:192.0.2.2')).toBe(0);
    now += 2999;
    expect(refused.remainingMs('ip:192.0.2.1')).toBe(1);
    now += 1;
    expect(refused.remainingMs('ip:192.0.2.1')).toBe(0);
    expect(refused.size).toBe(0);
  });

  it('is bounded: the address refused longest ago is forgotten first', () => {
    const refused = new RefusedAddresses(() => 0, 3);
    for (const ip of ['a', 'b', 'c']) refused.refuse(ip, 1000);
    refused.refuse('a', 1000); // refused again: the newest now
    refused.refuse('d', 1000);
    expect(refused.size).toBe(3);
    expect(['a', 'b', 'c', 'd'].map((ip) => refused.remainingMs(ip) > 0)).toEqual([true, false, true, true]);
  });
});
