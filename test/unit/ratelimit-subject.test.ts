/** Subjects and keys: one-to-one, inside the hash tag, IPv6 networks. Property-tested. */
import { isIPv6 } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import calculateSlot from 'cluster-key-slot';
import {
  escapeSubject,
  formatIPv6,
  ipSubject,
  parseIPv6,
  rateLimitKey,
  unescapeSubject,
} from '../../src/ratelimit/subject.js';

/** strings rich in the characters that matter */
const subjectText = fc.string({
  unit: fc.oneof(
    fc.constantFrom('{', '}', '%', '7', 'b', 'd', '2', '5', ':', 'a'),
    fc.string({ minLength: 1, maxLength: 1 }),
  ),
  maxLength: 12,
});
const tierName = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,6}$/);
const subject = fc.oneof(
  subjectText.map((s) => `c:${s}`),
  subjectText.map((s) => `ip:${s}`),
);

describe('rate-limit keys', () => {
  it('are one-to-one: different (tier, subject) pairs never share a key', () => {
    fc.assert(
      fc.property(tierName, subject, tierName, subject, (t1, s1, t2, s2) => {
        const same = rateLimitKey('gh:', t1, s1) === rateLimitKey('gh:', t2, s2);
        expect(same).toBe(t1 === t2 && s1 === s2);
      }),
      { numRuns: 20_000 },
    );
  });

  it('decode back to the subject, and keep the whole of it inside the hash tag', () => {
    fc.assert(
      fc.property(tierName, subject, (t, s) => {
        const escaped = escapeSubject(s);
        expect(unescapeSubject(escaped)).toBe(s);
        expect(escaped).not.toMatch(/[{}]/);
        const key = rateLimitKey('gh:', t, s);
        // the slot is the tag's: every key of a decision (`<key>:1m`, `<key>:q:month`) shares it
        expect(calculateSlot(`${key}:1m`)).toBe(calculateSlot(`{rl:${t}:${escaped}}`));
        expect(calculateSlot(`${key}:q:month`)).toBe(calculateSlot(`${key}:1m`));
      }),
      { numRuns: 5000 },
    );
  });

  it('are unchanged for subjects without braces or %, so ordinary counters survive an upgrade', () => {
    expect(rateLimitKey('gh:', 'free', 'ip:203.0.113.9')).toBe('gh:{rl:free:ip:203.0.113.9}');
    expect(rateLimitKey('gh:', 'pro', 'c:user-1@example.com')).toBe('gh:{rl:pro:c:user-1@example.com}');
    fc.assert(
      fc.property(
        subjectText.filter((s) => !/[{}%]/.test(s)),
        (s) => {
          expect(escapeSubject(s)).toBe(s);
        },
      ),
    );
  });

  it('keep apart the pair the old escaping merged', () => {
    expect(rateLimitKey('gh:', 'free', 'c:a{b')).toBe('gh:{rl:free:c:a%7bb}');
    expect(rateLimitKey('gh:', 'free', 'c:a%7bb')).toBe('gh:{rl:free:c:a%257bb}');
  });
});

const groups = fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 });
/** addresses with runs of zero groups, so `::` comes up often */
const sparseGroups = fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff })), {
  minLength: 8,
  maxLength: 8,
});

describe('IPv6 subjects', () => {
  it('parse and format (RFC 5952) are inverse, and Node agrees the text is IPv6', () => {
    fc.assert(
      fc.property(fc.oneof(groups, sparseGroups), (g) => {
        const text = formatIPv6(g);
        expect(isIPv6(text)).toBe(true);
        expect(parseIPv6(text)).toEqual(g);
        expect(parseIPv6(text.toUpperCase())).toEqual(g);
      }),
      { numRuns: 5000 },
    );
  });

  it('two addresses share a subject exactly when their first N bits agree', () => {
    const bitsOf = (g: number[]) => g.map((x) => x.toString(2).padStart(16, '0')).join('');
    fc.assert(
      fc.property(sparseGroups, sparseGroups, fc.integer({ min: 1, max: 128 }), (a, b, prefix) => {
        // often the same network, differing only after the prefix
        const c = bitsOf(a).slice(0, prefix) + bitsOf(b).slice(prefix);
        const cGroups = Array.from({ length: 8 }, (_, i) => parseInt(c.slice(16 * i, 16 * i + 16), 2));
        for (const other of [b, cGroups]) {
          // IPv4-mapped addresses are IPv4, not networks: left to the test below
          if ([a, other].some((g) => g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff)) continue;
          const same = ipSubject(formatIPv6(a), prefix) === ipSubject(formatIPv6(other), prefix);
          expect(same).toBe(bitsOf(a).slice(0, prefix) === bitsOf(other).slice(0, prefix));
        }
      }),
      { numRuns: 5000 },
    );
  });

  it('examples', () => {
    expect(ipSubject('2001:db8:1:2:3:4:5:6', 64)).toBe('ip:2001:db8:1:2::/64');
    expect(ipSubject('2001:0db8:0001:0002::ffff', 64)).toBe('ip:2001:db8:1:2::/64');
    expect(ipSubject('2001:db8:1:2:3:4:5:6', 48)).toBe('ip:2001:db8:1::/48');
    expect(ipSubject('2001:db8:1:2:3:4:5:6', 56)).toBe('ip:2001:db8:1::/56');
    expect(ipSubject('2001:db8:1:2ff:3:4:5:6', 56)).toBe('ip:2001:db8:1:200::/56');
    expect(ipSubject('2001:DB8::1', 128)).toBe('ip:2001:db8::1');
    expect(ipSubject('::1', 64)).toBe('ip:::/64');
    expect(ipSubject('fe80::1%eth0', 64)).toBe('ip:fe80::/64');
    expect(ipSubject('203.0.113.9', 64)).toBe('ip:203.0.113.9');
    expect(ipSubject('::ffff:203.0.113.9', 64)).toBe('ip:203.0.113.9');
    expect(ipSubject('::ffff:cb00:7109', 64)).toBe('ip:203.0.113.9');
    expect(ipSubject('::203.0.113.9', 128)).toBe('ip:::cb00:7109');
    expect(parseIPv6('1::2::3')).toBeNull();
    expect(parseIPv6('1:2:3:4:5:6:7:8:9')).toBeNull();
    expect(parseIPv6('12345::')).toBeNull();
  });
});
