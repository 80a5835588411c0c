/** Discovery's pure parts (origins, delays, outcomes) and its shell driven by a scripted resolver. */
import type { RecordWithTtl, SrvRecord } from 'node:dns';
import { Resolver } from 'node:dns/promises';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { DiscoveryConfig, ServiceConfig } from '../../src/config/schema.js';
import {
  AddressAnswers,
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
  NO_KNOWN_ADDRESSES,
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
  const known = NO_KNOWN_ADDRESSES;
  const ok = (origins: string[], ttls: number[] = []): LookupOutcome => ({
    ok: true,
    origins,
    ttls,
    known,
    failed: [],
    code: null,
  });
  const partial = (origins: string[], failed: string[], code = 'EREFUSED'): LookupOutcome => ({
    ok: true,
    origins,
    ttls: [],
    known,
    failed,
    code,
  });
  const fail = (code: string): LookupOutcome => ({ ok: false, code });
  const state = (origins: string[], failing: DiscoveryState['failing'] = 'none'): DiscoveryState => ({
    origins,
    failing,
    known,
  });

  it('takes a first answer as a change, without logging', () => {
    const step = applyOutcome(INITIAL_STATE, ok(['http://a:1'], [5]), 10_000);
    expect(step).toEqual({
      state: state(['http://a:1']),
      added: ['http://a:1'],
      removed: [],
      log: undefined,
      delayMs: 5000,
    });
  });

  it('keeps the same list object when nothing changed', () => {
    const before = state(['http://a:1']);
    const step = applyOutcome(before, ok(['http://a:1']), 10_000);
    expect(step.state.origins).toBe(before.origins);
    expect(step.added).toEqual([]);
    expect(step.removed).toEqual([]);
  });

  it('keeps the last known origins on failure and on an empty answer, warning once per streak', () => {
    const first = applyOutcome(state(['http://a:1']), fail('ETIMEOUT'), 10_000);
    expect(first).toMatchObject({
      state: state(['http://a:1'], 'all'),
      added: [],
      removed: [],
      log: { level: 'warn', code: 'ETIMEOUT' },
      delayMs: 10_000,
    });
    const second = applyOutcome(first.state, ok([]), 10_000);
    expect(second.state).toEqual(state(['http://a:1'], 'all'));
    expect(second.log).toBeUndefined();
    const back = applyOutcome(second.state, ok(['http://a:1', 'http://b:1']), 10_000);
    expect(back.state).toEqual(state(['http://a:1', 'http://b:1']));
    expect(back.log).toEqual({ level: 'info' });
    expect(back.added).toEqual(['http://b:1']);
  });

  it('reports an empty answer as ENODATA', () => {
    expect(applyOutcome(INITIAL_STATE, ok([]), 1000).log).toEqual({ level: 'warn', code: 'ENODATA' });
  });

  it('uses a partial answer, and warns once per streak of partial failures naming what failed', () => {
    const first = applyOutcome(INITIAL_STATE, partial(['http://a:1'], ['AAAA svc']), 10_000);
    expect(first.state).toEqual(state(['http://a:1'], 'partial'));
    expect(first.added).toEqual(['http://a:1']);
    expect(first.log).toEqual({ level: 'warn', code: 'EREFUSED', failed: ['AAAA svc'] });
    const again = applyOutcome(first.state, partial(['http://a:1', 'http://b:1'], ['AAAA svc']), 10_000);
    expect(again.added).toEqual(['http://b:1']);
    expect(again.log).toBeUndefined();
    // the whole lookup failing is news even during a partial streak, and so is its end
    const down = applyOutcome(again.state, fail('ETIMEOUT'), 10_000);
    expect(down.log).toEqual({ level: 'warn', code: 'ETIMEOUT' });
    const partly = applyOutcome(down.state, partial(['http://a:1'], ['AAAA svc']), 10_000);
    expect(partly.log).toEqual({ level: 'info', failed: ['AAAA svc'] });
    expect(partly.removed).toEqual(['http://b:1']);
    const whole = applyOutcome(partly.state, ok(['http://a:1']), 10_000);
    expect(whole.state.failing).toBe('none');
    expect(whole.log).toEqual({ level: 'info' });
  });

  it("a partial answer with no address at all keeps the last origins, with the failed query's code", () => {
    const step = applyOutcome(state(['http://a:1']), partial([], ['A svc'], 'ETIMEOUT'), 10_000);
    expect(step.state).toEqual(state(['http://a:1'], 'all'));
    expect(step.log).toEqual({ level: 'warn', code: 'ETIMEOUT' });
  });

  it('remembers what each query answered', () => {
    const answered = new Map([['A svc', ['10.0.0.1']]]);
    const step = applyOutcome(
      INITIAL_STATE,
      { ok: true, origins: ['http://10.0.0.1:80'], ttls: [], known: answered, failed: [], code: null },
      1000,
    );
    expect(step.state.known).toBe(answered);
    // a failed lookup changes nothing of it
    expect(applyOutcome(step.state, fail('ETIMEOUT'), 1000).state.known).toBe(answered);
  });
});

describe('AddressAnswers', () => {
  const fulfilled = (records: RecordWithTtl[]): PromiseSettledResult<RecordWithTtl[]> => ({
    status: 'fulfilled',
    value: records,
  });
  const rejected = (code: string): PromiseSettledResult<RecordWithTtl[]> => ({
    status: 'rejected',
    reason: dnsError(code),
  });

  it('takes answers (ENODATA: none) and remembers them with their TTLs', () => {
    const answers = new AddressAnswers(NO_KNOWN_ADDRESSES);
    expect(answers.take('A svc', fulfilled([a('10.0.0.1', 7)]), false)).toEqual(['10.0.0.1']);
    expect(answers.take('AAAA svc', rejected('ENODATA'), false)).toEqual([]);
    expect(answers.answered).toBe(2);
    expect(answers.ttls).toEqual([7]);
    expect([...answers.known]).toEqual([
      ['A svc', ['10.0.0.1']],
      ['AAAA svc', []],
    ]);
    expect(answers.failed).toEqual([]);
    expect(answers.code).toBeNull();
  });

  it('a failed query gives its last known addresses, for that query only', () => {
    const previous = new Map([
      ['A svc', ['10.0.0.1']],
      ['AAAA svc', ['fd00::1']],
    ]);
    const answers = new AddressAnswers(previous);
    expect(answers.take('A svc', fulfilled([a('10.0.0.2')]), false)).toEqual(['10.0.0.2']);
    expect(answers.take('AAAA svc', rejected('EREFUSED'), false)).toEqual(['fd00::1']);
    expect(answers.take('AAAA other', rejected('ESERVFAIL'), false)).toEqual([]);
    expect(answers.failed).toEqual(['AAAA svc', 'AAAA other']);
    expect(answers.code).toBe('EREFUSED');
    expect(answers.answered).toBe(1);
    expect([...answers.known]).toEqual([
      ['A svc', ['10.0.0.2']],
      ['AAAA svc', ['fd00::1']],
    ]);
  });

  it('NXDOMAIN is a failure, except for SRV targets (a pod gone before its record)', () => {
    const answers = new AddressAnswers(new Map([['A pod', ['10.0.0.1']]]));
    expect(answers.take('A svc', rejected('ENOTFOUND'), false)).toEqual([]);
    expect(answers.take('A pod', rejected('ENOTFOUND'), true)).toEqual([]);
    expect(answers.failed).toEqual(['A svc']);
    expect(answers.known.get('A pod')).toEqual([]);
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
      known: new Map([
        ['A svc', ['10.0.0.2', '10.0.0.1']],
        ['AAAA svc', []],
      ]),
      failed: [],
      code: null,
    });
    r.v6['svc'] = [a('fd00::1', 3)];
    const both = await lookupOrigins(r, discoveryConfig('svc'));
    expect(both.ok && both.origins).toContain('http://[fd00::1]:8080');
  });

  it('one family failing: the other is used, and the failed one gives its last known addresses', async () => {
    const r = new ScriptedResolver();
    r.v4['svc'] = [a('10.0.0.1')];
    r.v6['svc'] = 'EREFUSED';
    const first = await lookupOrigins(r, discoveryConfig('svc'));
    expect(first).toMatchObject({
      ok: true,
      origins: ['http://10.0.0.1:8080'],
      failed: ['AAAA svc'],
      code: 'EREFUSED',
    });

    // AAAA answered once, then fails again while A changes: A's new answer, AAAA's last one
    r.v6['svc'] = [a('fd00::1')];
    const both = await lookupOrigins(r, discoveryConfig('svc'));
    r.v4['svc'] = [a('10.0.0.2')];
    r.v6['svc'] = 'ESERVFAIL';
    const later = await lookupOrigins(r, discoveryConfig('svc'), both.ok ? both.known : undefined);
    expect(later).toMatchObject({
      ok: true,
      origins: ['http://10.0.0.2:8080', 'http://[fd00::1]:8080'],
      failed: ['AAAA svc'],
      code: 'ESERVFAIL',
    });
  });

  it('fails when every query fails', async () => {
    const r = new ScriptedResolver();
    r.v4['svc'] = 'ETIMEOUT';
    r.v6['svc'] = 'ESERVFAIL';
    expect(await lookupOrigins(r, discoveryConfig('svc'))).toEqual({ ok: false, code: 'ETIMEOUT' });
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
    expect(await lookupOrigins(r, discoveryConfig('_http._tcp.svc', { scheme: 'https' }))).toMatchObject({
      ok: true,
      origins: ['https://10.0.0.1:8081', 'https://[fd00::2]:8082'],
      ttls: [20, 4],
      failed: [],
    });
  });

  it("SRV: a target's family that cannot be resolved keeps its last known addresses; the others are used", async () => {
    const r = new ScriptedResolver();
    r.srv['_http._tcp.svc'] = [srv('pod-a', 8081), srv('pod-b', 8082)];
    r.v4['pod-a'] = [a('10.0.0.1')];
    r.v6['pod-a'] = 'ENODATA';
    r.v4['pod-b'] = [a('10.0.0.2')];
    r.v6['pod-b'] = 'ENODATA';
    const first = await lookupOrigins(r, discoveryConfig('_http._tcp.svc'));
    r.v4['pod-a'] = 'ETIMEOUT';
    r.v4['pod-b'] = [a('10.0.0.3')];
    expect(
      await lookupOrigins(r, discoveryConfig('_http._tcp.svc'), first.ok ? first.known : undefined),
    ).toMatchObject({
      ok: true,
      origins: ['http://10.0.0.1:8081', 'http://10.0.0.3:8082'],
      failed: ['A pod-a'],
      code: 'ETIMEOUT',
    });
  });

  it('SRV: the SRV query failing fails the lookup', async () => {
    const r = new ScriptedResolver();
    r.srv['_http._tcp.svc'] = 'ESERVFAIL';
    expect(await lookupOrigins(r, discoveryConfig('_http._tcp.svc'))).toEqual({
      ok: false,
      code: 'ESERVFAIL',
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
    const logs: Array<{ level: number; msg: string; code?: string; failed?: string[] }> = [];
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
    resolver.v6['svc'] = 'ESERVFAIL';
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
    expect(warnings[0]?.msg).toBe('dns discovery lookup failed; keeping the last known targets');

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

  it('A answered, AAAA refused: targets from A at once; the refused family keeps its last addresses', async () => {
    vi.useFakeTimers();
    const { logs, resolver, changes, discovery, start } = setup();
    resolver.v4['svc'] = [a('10.0.0.1', 60)];
    resolver.v6['svc'] = 'EREFUSED';
    start();
    await discovery.ready(60_000);
    expect(discovery.origins).toEqual(['http://10.0.0.1:8080']);
    const partial = logs.filter((l) => l.level === 40);
    expect(partial).toEqual([
      expect.objectContaining({
        code: 'EREFUSED',
        failed: ['AAAA svc'],
        msg: 'dns discovery lookup failed in part; using the answers, and the last known addresses of the failed queries',
      }),
    ]);

    // A keeps being followed; the same partial failure is not logged again
    resolver.v4['svc'] = [a('10.0.0.1', 60), a('10.0.0.2', 60)];
    await vi.advanceTimersByTimeAsync(5000);
    expect(discovery.origins).toEqual(['http://10.0.0.1:8080', 'http://10.0.0.2:8080']);
    expect(logs.filter((l) => l.level === 40)).toHaveLength(1);

    // AAAA answers: both families, and the streak's end is logged
    resolver.v6['svc'] = [a('fd00::1', 60)];
    await vi.advanceTimersByTimeAsync(5000);
    expect(discovery.origins).toEqual([
      'http://10.0.0.1:8080',
      'http://10.0.0.2:8080',
      'http://[fd00::1]:8080',
    ]);
    expect(logs.filter((l) => l.msg === 'dns discovery lookups succeed again')).toHaveLength(1);

    // AAAA fails again while A changes: the new A answer, with AAAA's last known address
    resolver.v4['svc'] = [a('10.0.0.3', 60)];
    resolver.v6['svc'] = 'ESERVFAIL';
    await vi.advanceTimersByTimeAsync(5000);
    expect(discovery.origins).toEqual(['http://10.0.0.3:8080', 'http://[fd00::1]:8080']);
    expect(logs.filter((l) => l.level === 40).map((l) => l.code)).toEqual(['EREFUSED', 'ESERVFAIL']);
    expect(changes.at(-1)).toEqual(discovery.origins);
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
