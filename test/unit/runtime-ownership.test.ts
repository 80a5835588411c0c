/**
 * Who closes what across reloads (server/runtime.ts): a runtime compiled from the previous one
 * takes over what did not change; closeRuntime(rt, keep) closes what rt holds and keep does not.
 * Over a chain of reloads, a failed one and a shutdown, every resource is closed exactly once.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { GatewayConfig } from '../../src/config/schema.js';
import { closeRuntime, compileRuntime, type Runtime } from '../../src/server/runtime.js';
import { Service } from '../../src/upstream/service.js';
import { configFrom } from '../helpers/gateway.js';

const yaml = (o: { yTarget?: string; limit?: number; keyPrefix?: string } = {}) => `
rateLimit:
  keyPrefix: "${o.keyPrefix ?? 'gh:'}"
  tiers:
    anonymous: { limits: [{ requests: ${o.limit ?? 30}, per: 1m }] }
services:
  x: { targets: ["http://127.0.0.1:1"] }
  y: { targets: ["${o.yTarget ?? 'http://127.0.0.1:2'}"] }
routes:
  - { name: x, match: { path: /x/** }, service: x, rateLimit: ip }
  - { name: y, match: { path: /y/** }, service: y }
`;

/** Counts the closes of everything a runtime holds (each object instrumented once). */
function closeCounter() {
  const closes = new Map<object, number>();
  const watch = (rt: Runtime) => {
    const held: Array<{ close(): Promise<void> }> = [...rt.services.values()];
    if (rt.limitStore) held.push(rt.limitStore);
    for (const r of held) {
      if (closes.has(r)) continue;
      closes.set(r, 0);
      const close = r.close.bind(r);
      (r as { close(): Promise<void> }).close = () => {
        closes.set(r, (closes.get(r) ?? 0) + 1);
        return close();
      };
    }
    return rt;
  };
  return { closes, watch };
}

const compile = (config: GatewayConfig, previous: Runtime | null = null) =>
  compileRuntime(config, undefined, null, undefined, previous);

afterEach(() => {
  vi.restoreAllMocks();
});

describe('runtime ownership across reloads', () => {
  it('takes over the unchanged, and closes each resource exactly once', async () => {
    const { closes, watch } = closeCounter();
    const rt1 = watch(compile(configFrom(yaml())));
    // y's target changes; the limit changes too (plans are per runtime, the store is kept)
    const rt2 = watch(compile(configFrom(yaml({ yTarget: 'http://127.0.0.1:3', limit: 10 })), rt1));
    expect(rt2.services.get('x')).toBe(rt1.services.get('x'));
    expect(rt2.services.get('y')).not.toBe(rt1.services.get('y'));
    expect(rt2.limitStore).toBe(rt1.limitStore);
    expect(rt2.rateLimiter?.store).toBe(rt1.rateLimiter?.store);
    expect(rt2.rateLimiter?.plans.get('anonymous')?.limits[0]?.requests).toBe(10);

    await closeRuntime(rt1, rt2); // the swap: only the old y goes
    expect([...closes.values()]).toEqual([0, 1, 0, 0]);

    // a reload that fails after compiling: its own y and its new store go, nothing of rt2's
    const rt3 = watch(compile(configFrom(yaml({ yTarget: 'http://127.0.0.1:4', keyPrefix: 'other:' })), rt2));
    expect(rt3.services.get('x')).toBe(rt2.services.get('x'));
    expect(rt3.limitStore).not.toBe(rt2.limitStore);
    await closeRuntime(rt3, rt2);
    expect(closes.get(rt3.services.get('y') as Service)).toBe(1);
    expect(closes.get(rt3.limitStore as object)).toBe(1);
    expect(closes.get(rt2.limitStore as object)).toBe(0);

    await closeRuntime(rt2); // shutdown
    expect([...closes.entries()].filter(([, n]) => n !== 1)).toEqual([]);
    expect(closes.size).toBe(6); // x, y1, store, y2, y3, store3
  });

  it('a compile that throws closes what it built and leaves the previous runtime alone', async () => {
    const rt1 = compile(configFrom(yaml()));
    const closed = vi.spyOn(Service.prototype, 'close');
    // a config built in code that the loader would refuse: a route naming no service
    const bad = configFrom(yaml({ yTarget: 'http://127.0.0.1:5' }));
    const broken = { ...bad, routes: [...bad.routes, { ...bad.routes[1]!, name: 'z', service: 'nope' }] };
    expect(() => compile(broken as GatewayConfig, rt1)).toThrow(/unknown service nope/);
    // the new y was closed; x (taken over from rt1) was not
    expect(closed).toHaveBeenCalledTimes(1);
    expect(closed.mock.contexts[0]).not.toBe(rt1.services.get('y'));
    expect(closed.mock.contexts[0]).not.toBe(rt1.services.get('x'));
    closed.mockRestore();
    await closeRuntime(rt1);
  });
});
