/**
 * IP allow and deny lists: the CIDR matcher against node's BlockList on many addresses (IPv4,
 * IPv6, IPv4-mapped), and the stage through a test context (global lists, then the route's).
 */
import { BlockList, isIPv4 } from 'node:net';
import { describe, expect, it } from 'vitest';
import { CidrSet, parseV4, parseV6 } from '../../src/stages/ip-filter/cidr.js';
import { ipFilter } from '../../src/stages/ip-filter/index.js';
import type { StageInstance } from '../../src/stages/stage.js';
import { configFrom } from '../helpers/gateway.js';
import { testContext, testDeps } from '../helpers/stage-context.js';

describe('address parsing', () => {
  it('IPv4: dotted quads only', () => {
    expect(parseV4('10.1.2.3')).toBe(0x0a010203);
    expect(parseV4('255.255.255.255')).toBe(0xffffffff);
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1..2.3', '1.2.3.4 ', 'a.b.c.d', '1234.1.1.1'])
      expect(parseV4(bad), bad).toBe(-1);
  });
  it('IPv6: full, compressed, with an IPv4 tail', () => {
    expect([...(parseV6('2001:db8::1') ?? [])]).toEqual([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]);
    expect([...(parseV6('::') ?? [])]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect([...(parseV6('::ffff:10.1.2.3') ?? [])]).toEqual([0, 0, 0, 0, 0, 0xffff, 0x0a01, 0x0203]);
    expect([...(parseV6('1:2:3:4:5:6:7:8') ?? [])]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    for (const bad of [
      '1::2::3',
      '1:2:3:4:5:6:7:8:9',
      '1:2:3:4:5:6:7',
      '12345::',
      'g::1',
      '1:2:3:4:5:6:7::8',
    ])
      expect(parseV6(bad), bad).toBeNull();
  });
});

describe('CidrSet', () => {
  const entries = [
    '10.0.0.0/8',
    '192.168.1.7',
    '172.16.0.0/12',
    '2001:db8::/32',
    '::1',
    'fe80::/10',
    '0.0.0.0/32',
  ];
  const set = new CidrSet(entries);
  const reference = new BlockList();
  for (const e of entries) {
    const [addr = '', bits] = e.split('/');
    const type = isIPv4(addr) ? 'ipv4' : 'ipv6';
    if (bits === undefined) reference.addAddress(addr, type);
    else reference.addSubnet(addr, Number(bits), type);
  }

  it('agrees with node’s BlockList on many addresses', () => {
    // deterministic pseudo-random addresses (a fixed LCG), plus the edges of each network
    let seed = 12345;
    const next = () => (seed = (seed * 1103515245 + 12345) >>> 0);
    const addresses = [
      '10.0.0.0',
      '10.255.255.255',
      '11.0.0.0',
      '9.255.255.255',
      '172.15.255.255',
      '172.16.0.0',
      '172.31.255.255',
      '172.32.0.0',
      '192.168.1.7',
      '192.168.1.8',
      '0.0.0.0',
      '2001:db8::',
      '2001:db8:ffff:ffff:ffff:ffff:ffff:ffff',
      '2001:db9::',
      '::1',
      '::2',
      'fe80::1',
      'febf::1',
      'fec0::1',
    ];
    for (let i = 0; i < 2000; i++) {
      const n = next();
      addresses.push(`${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`);
      const m = next();
      addresses.push(
        `${(m >>> 16).toString(16)}:${(m & 0xffff).toString(16)}::${(next() & 0xffff).toString(16)}`,
      );
    }
    for (const a of addresses) expect(set.has(a), a).toBe(reference.check(a, isIPv4(a) ? 'ipv4' : 'ipv6'));
  });

  it('IPv4-mapped IPv6 is the IPv4 address, in the list and in the address', () => {
    expect(set.has('::ffff:10.1.2.3')).toBe(true);
    expect(set.has('::ffff:11.1.2.3')).toBe(false);
    const mapped = new CidrSet(['::ffff:192.0.2.0/120']);
    expect(mapped.has('192.0.2.9')).toBe(true);
    expect(mapped.has('192.0.3.9')).toBe(false);
  });

  it('anything that is not an address matches nothing', () => {
    for (const junk of ['', 'unknown', '10.0.0.1:80', '[::1]', '10.0.0.0/8'])
      expect(set.has(junk), junk).toBe(false);
  });
});

describe('the ip-filter stage', () => {
  const config = configFrom(`
ip: { deny: [198.51.100.0/24] }
services: { svc: { targets: ["http://127.0.0.1:9"] } }
routes:
  - { name: a, match: { path: /a }, service: svc, ip: { allow: [10.0.0.0/8], deny: [10.9.0.0/16] } }
  - { name: b, match: { path: /b }, service: svc }
`);
  const stage = (i: number) => ipFilter.build(config.routes[i]!, config, testDeps()) as StageInstance;
  const outcome = (i: number, clientIp: string) => stage(i).onRequest?.(testContext({ clientIp }));

  it('deny wins over allow; a non-empty allow list refuses the rest; 403 ip_denied', () => {
    expect(outcome(0, '10.1.2.3')).toBeUndefined();
    expect(outcome(0, '10.9.1.1')).toMatchObject({ status: 403, code: 'ip_denied' });
    expect(outcome(0, '192.0.2.1')).toMatchObject({ status: 403, code: 'ip_denied' });
  });

  it('the top-level lists apply to every route', () => {
    expect(outcome(1, '198.51.100.7')).toMatchObject({ code: 'ip_denied' });
    expect(outcome(1, '192.0.2.1')).toBeUndefined();
  });

  it('a route without any list has no stage', () => {
    const bare = configFrom(`
services: { svc: { targets: ["http://127.0.0.1:9"] } }
routes: [ { name: a, match: { path: /a }, service: svc } ]
`);
    expect(ipFilter.build(bare.routes[0]!, bare, testDeps())).toBeNull();
  });
});
