import { describe, expect, it } from 'vitest';
import type { HealthCheckConfig, PassiveHealthConfig } from '../../src/config/schema.js';
import { afterCheck, type CheckVerdict } from '../../src/upstream/active-health.js';
import { mayEject, nextEjection, type PassiveState } from '../../src/upstream/passive-health.js';

const passive: PassiveHealthConfig = {
  consecutiveErrors: 5,
  ejectFor: 10_000,
  maxEjectFor: 300_000,
  maxEjectedPercent: 50,
};

describe('passive ejection', () => {
  it('doubles with each ejection in a row, up to maxEjectFor', () => {
    const s: PassiveState = { consecutiveFailures: 0, ejections: 0, backAt: 0 };
    const durations: number[] = [];
    let now = 0;
    for (let i = 0; i < 7; i++) {
      const d = nextEjection(passive, s, now);
      durations.push(d);
      now += d;
      s.backAt = now; // readmitted, and failing again at once
    }
    expect(durations).toEqual([10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000]);
  });

  it('forgives one step for every ejectFor spent without an ejection', () => {
    const s: PassiveState = { consecutiveFailures: 0, ejections: 3, backAt: 1_000_000 };
    expect(nextEjection(passive, s, 1_000_000 + 25_000)).toBe(20_000); // 2 steps forgiven: 3 → 1 → 2nd ejection
    const fresh: PassiveState = { consecutiveFailures: 0, ejections: 4, backAt: 0 };
    expect(nextEjection(passive, { ...fresh, backAt: 1 }, 1 + 3_600_000)).toBe(10_000);
  });

  it('caps the share of targets ejected at once', () => {
    expect(mayEject(passive, 0, 1)).toBe(false); // a lone target is never ejected at 50 %
    expect(mayEject(passive, 0, 2)).toBe(true);
    expect(mayEject(passive, 1, 2)).toBe(false);
    expect(mayEject(passive, 1, 4)).toBe(true);
    expect(mayEject(passive, 2, 4)).toBe(false);
    expect(mayEject({ ...passive, maxEjectedPercent: 100 }, 0, 1)).toBe(true);
    expect(mayEject({ ...passive, maxEjectedPercent: 0 }, 0, 10)).toBe(false);
  });
});

describe('active check verdicts', () => {
  const config: HealthCheckConfig = {
    path: '/health',
    interval: 5000,
    timeout: 1000,
    healthyAfter: 2,
    unhealthyAfter: 3,
  };
  const run = (results: boolean[], start: CheckVerdict = { healthy: true, passes: 0, failures: 0 }) =>
    results.reduce<{ v: CheckVerdict; trail: boolean[] }>(
      ({ v, trail }, passed) => {
        const next = afterCheck(config, v, passed);
        return { v: next, trail: [...trail, next.healthy] };
      },
      { v: start, trail: [] },
    ).trail;

  it('turns unhealthy after unhealthyAfter failures in a row', () => {
    expect(run([false, false, false])).toEqual([true, true, false]);
    expect(run([false, false, true, false, false])).toEqual([true, true, true, true, true]);
  });
  it('turns healthy again after healthyAfter passes in a row', () => {
    expect(run([false, false, false, true, false, true, true])).toEqual([
      true,
      true,
      false,
      false,
      false,
      false,
      true,
    ]);
  });
});
