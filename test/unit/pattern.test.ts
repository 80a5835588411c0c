import { describe, expect, it } from 'vitest';
import { parsePattern, type Segment } from '../../src/router/pattern.js';
import { parseRequestTarget } from '../../src/router/request-target.js';

const lit = (value: string): Segment => ({ kind: 'literal', value });
const star: Segment = { kind: 'star' };
const globstar: Segment = { kind: 'globstar' };

function segments(pattern: string): Segment[] {
  const parsed = parsePattern(pattern);
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.segments;
}

const reason = (pattern: string) => {
  const parsed = parsePattern(pattern);
  return parsed.ok ? null : parsed.reason;
};

describe('parsePattern', () => {
  it.each<[string, Segment[]]>([
    ['/', [lit('')]],
    ['/a', [lit('a')]],
    ['/a/', [lit('a'), lit('')]],
    ['/a/b', [lit('a'), lit('b')]],
    ['/*', [star]],
    ['/**', [globstar]],
    ['/api/*/items', [lit('api'), star, lit('items')]],
    ['/api/**', [lit('api'), globstar]],
    ['/v1/*/**', [lit('v1'), star, globstar]],
    ["/a-b_c.d~e!$&'()+,=:@", [lit("a-b_c.d~e!$&'()+,=:@")]],
    ['/caf%C3%A9', [lit('caf%C3%A9')]],
    ['/100%25', [lit('100%25')]],
  ])('%s', (pattern, expected) => {
    expect(segments(pattern)).toEqual(expected);
  });

  it.each([
    ['a', 'must start with "/"'],
    ['', 'must start with "/"'],
    ['/a/**/b', '"**" may only be the last segment'],
    ['/**/**', '"**" may only be the last segment'],
    ['/a*', '"a*": "*" must be a whole segment'],
    ['/*.json', '"*.json": "*" must be a whole segment'],
    ['/***', '"***": "*" must be a whole segment'],
    ['//a', 'empty segment ("//")'],
    ['/a//b', 'empty segment ("//")'],
    ['/a/./b', 'dot segments are not allowed'],
    ['/a/..', 'dot segments are not allowed'],
    ['/a?b', '"a?b": a pattern matches the path only, "?" and "#" are not allowed'],
    ['/a#b', '"a#b": a pattern matches the path only, "?" and "#" are not allowed'],
    ['/a\\b', '"a\\b": "\\" is not allowed (requests containing it are refused)'],
    ['/a b', '"a b": write it percent-encoded, as requests carry it: "a%20b"'],
    ['/café', '"café": write it percent-encoded, as requests carry it: "caf%C3%A9"'],
    ['/{id}', '"{id}": write it percent-encoded, as requests carry it: "%7Bid%7D"'],
    ['/caf%c3%a9', '"caf%c3%a9": write "%C3" in upper case'],
    ['/%7Euser', '"%7Euser": write "~" instead of "%7E"'],
    ['/a%2Fb', '"a%2Fb": "%2F" is not allowed (requests containing it are refused)'],
    ['/a%2541', '"a%2541": "%2541" is not allowed (requests containing it are refused)'],
    ['/a%zz', '"a%zz": invalid percent-encoding'],
    ['/a%4', '"a%4": invalid percent-encoding'],
    ['/a;b', '"a;b": requests with this segment are refused (";" (path parameters) in path)'],
  ])('refuses %j', (pattern, expected) => {
    expect(reason(pattern)).toBe(expected);
  });

  it('accepts a literal exactly when some normalised request path has it as a segment', () => {
    // the suggestion for a refused literal is what the request normaliser produces
    for (const raw of ['café', 'a b', '{x}', 'a"b', 'ü^`|<>']) {
      const target = parseRequestTarget(`/${encodeURI(raw)}`);
      expect(target.ok).toBe(true);
      if (!target.ok) continue;
      expect(reason(target.path)).toBeNull();
      expect(reason(`/${raw}`)).toContain(`"${target.path.slice(1)}"`);
    }
  });
});
