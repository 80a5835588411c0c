import { describe, expect, it } from 'vitest';
import { isValidHost } from '../../src/router/host.js';

describe('isValidHost: the port', () => {
  // an empty port is allowed (RFC 3986 §3.2.3: the scheme's default); any other is 1 to 65535
  it.each(['x:1', 'x:80', 'x:65535', 'x:080', 'x:', '[::1]:', '[::1]:1', '[::1]:65535', '127.0.0.1:8080'])(
    '%j is accepted',
    (host) => expect(isValidHost(host)).toBe(true),
  );

  it.each([
    'x:0',
    'x:00000',
    'x:65536',
    'x:99999',
    'x:100000',
    'x:0080a',
    'x:+80',
    'x:-1',
    'x: 80',
    'x:8 0',
    'x:１',
    '[::1]:0',
    '[::1]:99999',
  ])('%j is refused', (host) => expect(isValidHost(host)).toBe(false));
});
