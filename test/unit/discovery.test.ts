/** Discovery's pure parts (origins, delays, outcomes) and its shell driven by a scripted resolver. */
import type { RecordWithTtl, SrvRecord } from 'node:dns';
import { Resolver } from 'node:dns/promises';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { DiscoveryConfig, ServiceConfig } from '../../src/config/schema.js';
import {
  applyOutcome,
  buildOrigins,
  createDiscovery,
  createResolver,
  diffOrigins,
  DnsDiscovery,
  errorCode,
  INITIAL_STATE,
  lookupOrigins,
  lowestPriority,
  nextDelay,
  originOf,
  type DiscoveryState,
  type DnsLookup,
  type LookupOutcome,
} from '../../src/upstream/discovery/index.js';

const srv = (name: string, port: number, priority = 0, weight = 10): SrvRecord => ({
  name,
  port,
  priority,
  weight,
});
const dnsError = (code: string) => Object.assign(new Error(`query failed: ${code}`), { code });
const a = (address: string, ttl = 30): RecordWithTtl => ({ address, ttl });

describe('origins from records', () => {
  it('puts IPv6 in brackets and normalises like a static target', () => {
    expect(originOf('http', '10.0.0.5', 8080)).toBe('http://10.0.0.5:8080');
    expect(originOf('https', 'fd00::5', 8443)).toBe('https://[fd00::5]:8443');
    expect(originOf('http', 'fd00:0:0:0:0:0:0:5', 8080)).toBe('http://[fd00::5]:8080');
    // the scheme's default port disappears, as with `new URL(target).origin`
    expect(originOf('http', '10.0.0.5', 80)).toBe('http://10.0.0.5');
  });

  it('sorts and removes duplicates', () => {
    const origins = buildOrigins('http', [
      { address: '10.0.0.9', port: 80 },
      { address: '10.0.0.10', port: 8080 },
      { address: 'fd00::1', port: 8080 },
      { address: '10.0.0.10', port: 8080 },
      { address: '10.0.0.10', port: 8081 },
    ]);
    expect(origins).toEqual([
      'http://10.0.0.10:8080',
      'http://10.0.0.10:8081',
      'http://10.0.0.9',
      'http://[fd00::1]:8080',
    ]);
  });

  it('keeps only the SRV records of the lowest priority value, and drops "." targets', () => {
    const records = [srv('b', 2, 20), srv('a', 1, 10), srv('.', 3, 5), srv('c', 4, 10), srv('', 5, 1)];
    expect(lowestPriority(records).map((r) => r.name)).toEqual(['a', 'c']);
    expect(lowestPriority([])).toEqual([]);
    expect(lowestPriority([srv('.', 0)])).toEqual([]);
  });
});

describe('nextDelay', () => {
  it('is the smallest TTL when shorter than refresh', () => {
    expect(nextDelay(10_000, [30, 5, 7])).toBe(5000);
  });
  it('is refresh when every TTL is longer, or there is none', () => {
    expect(nextDelay(10_000, [30, 60])).toBe(10_000);
    expect(nextDelay(10_000, [])).toBe(10_000);
  });
  it('never goes below 1 s for a TTL, whatever the TTL', () => {
    expect(nextDelay(10_000, [0])).toBe(1000);
    expect(nextDelay(10_000, [1])).toBe(1000);
  });
  it('keeps a refresh shorter than the floor', () => {
    expect(nextDelay(300, [0, 30])).toBe(300);
  });
});

describe('diffOrigins', () => {
  it('lists what was added and removed', () => {
    expect(diffOrigins(['http://a:1', 'http://b:1'], ['http://b:1', 'http://c:1'])).toEqual({
      added: ['http://c:1'],
      removed: ['http://a:1'],
    });
    expect(diffOrigins(['http://a:1'], ['http://a:1'])).toEqual({ added: [], removed: [] });
  });
});

describe('errorCode', () => {
  it('reads a string code, else UNKNOWN', () => {
    expect(errorCode(dnsError('ETIMEOUT'))).toBe('ETIMEOUT');
    expect(errorCode(new Error('x'))).toBe('UNKNOWN');
    expect(errorCode({ code: 5 })).toBe('UNKNOWN');
    expect(errorCode(null)).toBe('UNKNOWN');
  });
});

describe('applyOutcome', () => {
  const ok = (origins: string[], ttls: number[] = []): LookupOutcome => ({ ok: true, origins, ttls });
  const fail = (code: string): LookupOutcome => ({ ok: false, code });

  it('takes a first answer as a change, without logging', () => {
    const step = applyOutcome(INITIAL_STATE, ok(['http://a:1'], [5]), 10_000);
    expect(step).toEqual({
      state: { origins: ['http://a:1'], failing: false },
      added: ['http://a:1'],
      removed: [],
      log: undefined,
      delayMs: 5000,
    });
  });

  it('keeps the same list object when nothing changed', () => {
    const state = { origins: ['http://a:1'], failing: false };
    const step = applyOutcome(state, ok(['http://a:1']), 10_000);
    expect(step.state.origins).toBe(state.origins);
    expect(step.added).toEqual([]);
    expect(step.removed).toEqual([]);
  });

  it('keeps the last known origins on failure and on an empty answer, warning once per streak', () => {
    let state: DiscoveryState = { origins: ['http://a:1'], failing: false };
    const first = applyOutcome(state, fail('ETIMEOUT'), 10_000);
    expect(first).toMatchObject({
      state: { origins: ['http://a:1'], failing: true },
      added: [],
      removed: [],
      log: { level: 'warn', code: 'ETIMEOUT' },
      delayMs: 10_000,
    });
    state = first.state;
    const second = applyOutcome(state, ok([]), 10_000);
    expect(second.state).toEqual({ origins: ['http://a:1'], failing: true });
    expect(second.log).toBeUndefined();
    const back = applyOutcome(second.state, ok(['http://a:1', 'http://b:1']), 10_000);
    expect(back.state).toEqual({ origins: ['http://a:1', 'http://b:1'], failing: false });
    expect(back.log).toEqual({ level: 'info' });
    expect(back.added).toEqual(['http://b:1']);
  });

  it('reports an empty answer as ENODATA', () => {
    expect(applyOutcome(INITIAL_STATE, ok([]), 1000).log).toEqual({ level: 'warn', code: 'ENODATA' });
  });
});

/** A resolver answering from tables; a name absent from a table is NXDOMAIN, '!CODE' an error. */
class ScriptedResolver implements DnsLookup {
  v4: Record<string, RecordWithTtl[] | string> = {};
  v6: Record<string, RecordWithTtl[] | string> = {};
  srv: Record<string, SrvRecord[] | string> = {};
  /** while set, every query waits for `release` */
  hold = false;
  private held: Array<() => void> = [];
  calls = 0;
  cancelled = 0;

  private answer<T>(table: Record<string, T[] | string>, name: string): Promise<T[]> {
    this.calls++;
    const settle = (): Promise<T[]> => {
      const entry = table[name];
      if (entry === undefined) return Promise.reject(dnsError('ENOTFOUND'));
      if (typeof entry === 'string') return Promise.reject(dnsError(entry));
      return Promise.resolve(entry);
    };
    if (!this.hold) return settle();
    return new Promise((resolve, reject) => this.held.push(() => settle().then(resolve, reject)));
  }
  release(): void {
    this.hold = false;
    for (const go of this.held.splice(0)) go();
  }
  resolve4(name: string): Promise<RecordWithTtl[]> {
    return this.answer(this.v4, name);
  }
  resolve6(name: string): Promise<RecordWithTtl[]> {
    return this.answer(this.v6, name);
  }
  resolveSrv(name: string): Promise<SrvRecord[]> {
    return this.answer(this.srv, name);
  }
  cancel(): void {
    this.cancelled++;
  }
}

const discoveryConfig = (dns: string, extra: Partial<DiscoveryConfig> = {}): DiscoveryConfig => ({
  dns,
  port: 8080,
  refresh: 10_000,
  scheme: 'http',
  ...extra,
});

describe('lookupOrigins', () => {
  it('A and AAAA together; a family without records is empty', async () => {
    const r = new ScriptedResolver();
    r.v4['svc'] = [a('10.0.0.2', 30), a('10.0.0.1', 5)];
    r.v6['svc'] = 'ENODATA';
    expect(await lookupOrigins(r, discoveryConfig('svc'))).toEqual({
      ok: true,
      origins: ['http://10.0.0.1:8080', 'http://10.0.0.2:8080'],
      ttls: [30, 5],
    });
    r.v6['svc'] = [a('fd00::1', 3)];
    const both = await lookupOrigins(r, discoveryConfig('svc'));
    expect(both.ok && both.origins).toContain('http://[fd00::1]:8080');
  });

  it('fails on any other error of either family', async () => {
    const r = new ScriptedResolver();
    r.v4['svc'] = [a('10.0.0.1')];
    r.v6['svc'] = 'ESERVFAIL';
    expect(await lookupOrigins(r, discoveryConfig('svc'))).toEqual({ ok: false, code: 'ESERVFAIL' });
    expect(await lookupOrigins(r, discoveryConfig('missing'))).toEqual({ ok: false, code: 'ENOTFOUND' });
  });

  it('SRV: lowest priority only, each target with its own port; a vanished target is skipped', async () => {
    const r = new ScriptedResolver();
    r.srv['_http._tcp.svc'] = [
      srv('pod-a', 8081),
      srv('pod-b', 8082),
      srv('backup', 9000, 1),
      srv('gone', 8083),
    ];
    r.v4['pod-a'] = [a('10.0.0.1', 20)];
    r.v6['pod-a'] = 'ENODATA';
    r.v4['pod-b'] = 'ENODATA';
    r.v6['pod-b'] = [a('fd00::2', 4)];
    r.v4['backup'] = [a('10.0.0.9')];
    r.v6['backup'] = 'ENODATA';
    expect(await lookupOrigins(r, discoveryConfig('_http._tcp.svc', { scheme: 'https' }))).toEqual({
      ok: true,
      origins: ['https://10.0.0.1:8081', 'https://[fd00::2]:8082'],
      ttls: [20, 4],
    });
  });

  it('SRV: a target that cannot be resolved (not NXDOMAIN) fails the lookup', async () => {
    const r = new ScriptedResolver();
    r.srv['_http._tcp.svc'] = [srv('pod-a', 8081)];
    r.v4['pod-a'] = 'ETIMEOUT';
    r.v6['pod-a'] = 'ENODATA';
    expect(await lookupOrigins(r, discoveryConfig('_http._tcp.svc'))).toEqual({
      ok: false,
      code: 'ETIMEOUT',
    });
  });
});

describe('createDiscovery', () => {
  const base = {} as Omit<ServiceConfig, 'targets' | 'discovery'>;

  it('static targets: origins at once, ready at once', async () => {
    const d = createDiscovery(
      'static',
      { ...base, targets: ['http://b.local:8080/x', 'http://a.local:80', 'http://b.local:8080'] },
      undefined,
      pino({ level: 'silent' }),
    );
    expect(d.origins).toEqual(['http://a.local', 'http://b.local:8080']);
    d.start(() => expect.fail('static targets never change'));
    await d.ready(60_000);
    d.close();
  });

  it('without a `dns` section the resolver asks the system servers; with one, only those', () => {
    expect(createResolver(undefined).getServers()).toEqual(new Resolver().getServers());
    expect(createResolver({ servers: ['127.0.0.1:5353', '[::1]:5353'], timeout: 500 }).getServers()).toEqual([
      '127.0.0.1:5353',
      '[::1]:5353',
    ]);
  });
});

describe('DnsDiscovery with a scripted resolver', () => {
  afterEach(() => vi.useRealTimers());

  function setup(dns = 'svc') {
    const logs: Array<{ level: number; msg: string; code?: string }> = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line)) });
    const resolver = new ScriptedResolver();
    const changes: Array<readonly string[]> = [];
    const discovery = new DnsDiscovery('orders', discoveryConfig(dns, { refresh: 5000 }), resolver, logger);
    return { logs, resolver, changes, discovery, start: () => discovery.start((o) => changes.push(o)) };
  }

  it('follows the records, keeps them through a failure streak, and logs warn once then info', async () => {
    vi.useFakeTimers();
    const { logs, resolver, changes, discovery, start } = setup();
    resolver.v4['svc'] = [a('10.0.0.1', 60)];
    resolver.v6['svc'] = 'ENODATA';
    start();
    await discovery.ready(60_000);
    expect(discovery.origins).toEqual(['http://10.0.0.1:8080']);
    expect(changes).toEqual([['http://10.0.0.1:8080']]);

    resolver.v4['svc'] = 'ETIMEOUT';
    await vi.advanceTimersByTimeAsync(5000);
    resolver.v4['svc'] = 'ESERVFAIL';
    await vi.advanceTimersByTimeAsync(5000);
    delete resolver.v4['svc']; // NXDOMAIN
    resolver.v6['svc'] = 'ENOTFOUND';
    await vi.advanceTimersByTimeAsync(5000);
    expect(discovery.origins).toEqual(['http://10.0.0.1:8080']);
    expect(changes).toHaveLength(1);
    const warnings = logs.filter((l) => l.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.code).toBe('ETIMEOUT');

    resolver.v4['svc'] = [a('10.0.0.1', 60), a('10.0.0.2', 60)];
    resolver.v6['svc'] = 'ENODATA';
    await vi.advanceTimersByTimeAsync(5000);
    expect(changes).toEqual([['http://10.0.0.1:8080'], ['http://10.0.0.1:8080', 'http://10.0.0.2:8080']]);
    expect(logs.filter((l) => l.msg === 'dns discovery lookups succeed again')).toHaveLength(1);

    // the same answer again: no onChange
    await vi.advanceTimersByTimeAsync(5000);
    expect(changes).toHaveLength(2);
    discovery.close();
  });

  it('honours a short TTL, floored at 1 s', async () => {
    vi.useFakeTimers();
    const { resolver, discovery, start } = setup();
    resolver.v4['svc'] = [a('10.0.0.1', 0)];
    resolver.v6['svc'] = 'ENODATA';
    start();
    await vi.advanceTimersByTimeAsync(0);
    expect(resolver.calls).toBe(2);
    await vi.advanceTimersByTimeAsync(999);
    expect(resolver.calls).toBe(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(resolver.calls).toBe(4);
    discovery.close();
  });

  it('a first lookup that fails leaves origins empty and still makes ready() resolve', async () => {
    const { logs, changes, discovery, start } = setup('missing');
    start();
    await discovery.ready(60_000);
    expect(discovery.origins).toEqual([]);
    expect(changes).toEqual([]);
    expect(logs.find((l) => l.level === 40)?.code).toBe('ENOTFOUND');
    discovery.close();
  });

  it('ready() gives up after its timeout while the first lookup hangs', async () => {
    const { resolver, discovery, start } = setup();
    resolver.hold = true;
    start();
    await discovery.ready(20);
    expect(resolver.calls).toBe(2); // the first lookup is still waiting for its answer
    expect(discovery.origins).toEqual([]);
    discovery.close();
  });

  it('a result arriving after close() changes nothing; close() cancels the resolver and stops the timer', async () => {
    vi.useFakeTimers();
    const { resolver, changes, discovery, start } = setup();
    resolver.v4['svc'] = [a('10.0.0.1', 60)];
    resolver.v6['svc'] = 'ENODATA';
    resolver.hold = true;
    start();
    const calls = resolver.calls;
    discovery.close();
    expect(resolver.cancelled).toBe(1);
    resolver.release();
    await vi.advanceTimersByTimeAsync(60_000);
    expect(changes).toEqual([]);
    expect(discovery.origins).toEqual([]);
    expect(resolver.calls).toBe(calls);
    await discovery.ready(60_000); // released by close()
  });

  it('a listener that throws does not stop later lookups', async () => {
    vi.useFakeTimers();
    const logger = pino({ level: 'silent' });
    const resolver = new ScriptedResolver();
    resolver.v4['svc'] = [a('10.0.0.1', 60)];
    resolver.v6['svc'] = 'ENODATA';
    const discovery = new DnsDiscovery('orders', discoveryConfig('svc', { refresh: 5000 }), resolver, logger);
    let calls = 0;
    discovery.start(() => {
      calls++;
      throw new Error('listener bug');
    });
    await vi.advanceTimersByTimeAsync(0);
    resolver.v4['svc'] = [a('10.0.0.2', 60)];
    await vi.advanceTimersByTimeAsync(5000);
    expect(calls).toBe(2);
    expect(discovery.origins).toEqual(['http://10.0.0.2:8080']);
    discovery.close();
  });
});
