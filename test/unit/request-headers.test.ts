import { describe, expect, it } from 'vitest';
import { isValidHost, normaliseHost } from '../../src/router/host.js';
import { clientIpFor, TrustedProxies } from '../../src/stages/real-ip/index.js';
import { requestIdFor } from '../../src/stages/request-id/index.js';
import { MAX_RAW_HEADER_ENTRIES, scanRequestHeaders } from '../../src/upstream/request-headers.js';

/** headers as [name, value] pairs */
const scan = (...pairs: Array<[string, string]>) => scanRequestHeaders(pairs.flat());
const names = (forward: string[]) => forward.filter((_v, i) => i % 2 === 0);

describe('scanRequestHeaders', () => {
  it('forwards ordinary headers lower-cased, in order, repeats kept', () => {
    const s = scan(['Host', 'a'], ['Accept', 'x'], ['X-Foo', '1'], ['x-foo', '2']);
    expect(s.forward).toEqual(['accept', 'x', 'x-foo', '1', 'x-foo', '2']);
    expect(s.host).toBe('a');
    expect(s.invalid).toBeUndefined();
  });

  it('drops hop-by-hop headers and the ones Connection names', () => {
    const s = scan(
      ['Host', 'a'],
      ['Connection', 'keep-alive, X-Secret'],
      ['Connection', 'Authorization'],
      ['Keep-Alive', 'timeout=5'],
      ['TE', 'trailers'],
      ['Trailer', 'X-T'],
      ['Upgrade', 'h2c'],
      ['Proxy-Connection', 'keep-alive'],
      ['Proxy-Authorization', 'Basic eA=='],
      ['X-Secret', 's'],
      ['Authorization', 'Bearer t'],
      ['Accept', '*/*'],
    );
    expect(s.forward).toEqual(['accept', '*/*']);
  });

  it('drops method-override headers: the route was chosen for the real method', () => {
    const s = scan(
      ['X-HTTP-Method-Override', 'DELETE'],
      ['X-HTTP-Method', 'PUT'],
      ['X-Method-Override', 'PATCH'],
      ['x_http_method_override', 'DELETE'],
      ['Accept', '1'],
    );
    expect(s.forward).toEqual(['accept', '1']);
  });

  it.each(['X-Consumer-Id', 'x-consumer-id', 'X-CONSUMER-TIER', 'x-CoNsUmEr-Roles', 'X-Consumer-Anything'])(
    'removes client-sent %s',
    (name) => {
      expect(scan(['Host', 'a'], [name, 'admin'], ['Accept', '1']).forward).toEqual(['accept', '1']);
    },
  );

  it.each([
    'X-Consumer_Id',
    'x_consumer_id',
    'X_Forwarded_For',
    'x-forwarded_host',
    'X-Request_Id',
    'Content_Length',
    'Transfer_Encoding',
  ])('removes %s, which CGI-style upstreams read as the header the gateway controls', (name) => {
    expect(scan(['Host', 'a'], [name, 'spoofed'], ['X_Custom', 'kept']).forward).toEqual([
      'x_custom',
      'kept',
    ]);
  });

  it('reads but does not forward the headers the gateway sets itself', () => {
    const s = scan(
      ['Host', 'a'],
      ['X-Request-Id', 'r1'],
      ['X-Forwarded-For', '1.1.1.1'],
      ['X-Forwarded-For', '2.2.2.2'],
      ['X-Forwarded-Proto', 'https'],
      ['X-Forwarded-Host', 'h'],
    );
    expect(s.forward).toEqual([]);
    expect(s.requestId).toBe('r1');
    expect(s.forwardedFor).toBe('1.1.1.1, 2.2.2.2');
    expect(s.forwardedProto).toBe('https');
    expect(s.forwardedHost).toBe('h');
  });

  it('a duplicated X-Request-Id is not kept', () => {
    expect(scan(['X-Request-Id', 'a'], ['X-Request-Id', 'b']).requestId).toBe('');
  });

  it('Connection naming the gateway-controlled headers changes nothing', () => {
    const s = scan(
      ['Host', 'a'],
      ['Connection', 'x-forwarded-for, x-request-id, content-length, host'],
      ['Content-Length', '5'],
    );
    expect(s.forward).toEqual(['content-length', '5']);
    expect(s.bodyLength).toBe(5);
  });

  describe('framing', () => {
    it('Content-Length: normalised number, forwarded once', () => {
      expect(scan(['Content-Length', '005'])).toMatchObject({
        bodyLength: 5,
        forward: ['content-length', '5'],
      });
      expect(scan(['Content-Length', '0'])).toMatchObject({ bodyLength: 0, forward: [] });
      expect(scan(['Content-Length', '5'], ['Content-Length', '5']).forward).toEqual(['content-length', '5']);
    });

    it.each([
      [['Content-Length', '5', 'Content-Length', '6'], /conflicting Content-Length/],
      [['Content-Length', '+5'], /invalid Content-Length/],
      [['Content-Length', '5a'], /invalid Content-Length/],
      [['Content-Length', '-1'], /invalid Content-Length/],
      [['Content-Length', '5, 5'], /invalid Content-Length/],
      [['Content-Length', ''], /invalid Content-Length/],
      [['Content-Length', '9999999999999999'], /invalid Content-Length/],
      [['Transfer-Encoding', 'chunked', 'Content-Length', '5'], /both Content-Length and Transfer-Encoding/],
      [['Transfer-Encoding', 'gzip'], /unsupported Transfer-Encoding/],
      [['Transfer-Encoding', 'chunked, identity'], /unsupported Transfer-Encoding/],
      [['Transfer-Encoding', 'gzip', 'Transfer-Encoding', 'chunked'], /unsupported Transfer-Encoding/],
      [['Transfer-Encoding', 'chunked', 'Transfer-Encoding', 'chunked'], /unsupported Transfer-Encoding/],
      [['Transfer-Encoding', 'xchunked'], /unsupported Transfer-Encoding/],
    ])('%j is refused', (raw, reason) => {
      expect(scanRequestHeaders(raw).invalid).toMatch(reason);
    });

    it('chunked is read, never forwarded (the gateway frames the upload itself)', () => {
      const s = scan(['Transfer-Encoding', ' Chunked ']);
      expect(s.invalid).toBeUndefined();
      expect(s.bodyLength).toBe(-1);
      expect(names(s.forward)).not.toContain('transfer-encoding');
    });
  });

  describe('Upgrade', () => {
    it.each(['h2c', 'websocket, h2c', 'TLS/1.0'])(
      'Connection: upgrade with Upgrade: %s is refused',
      (proto) => {
        expect(scan(['Connection', 'Upgrade, HTTP2-Settings'], ['Upgrade', proto]).invalid).toMatch(
          /unsupported Upgrade/,
        );
      },
    );

    it('WebSocket is accepted; Upgrade is never in the forwarded list (the relay sets it)', () => {
      const s = scan(['Connection', 'Upgrade'], ['Upgrade', 'WebSocket']);
      expect(s.invalid).toBeUndefined();
      expect(names(s.forward)).not.toContain('upgrade');
    });

    it('an Upgrade header without Connection: upgrade is only dropped', () => {
      const s = scan(['Upgrade', 'h2c'], ['Accept', '1']);
      expect(s.invalid).toBeUndefined();
      expect(s.forward).toEqual(['accept', '1']);
    });
  });

  describe('Host', () => {
    it('several Host headers are refused, even with the same value', () => {
      expect(scan(['Host', 'a'], ['Host', 'b']).invalid).toMatch(/multiple Host/);
      expect(scan(['Host', 'a'], ['Host', 'a']).invalid).toMatch(/multiple Host/);
    });

    it.each([
      'a b',
      'a/b',
      'a@b',
      'evil.com#x',
      'a:b:c',
      'a:80x',
      'a%2fb',
      '[::1',
      '[zz]',
      '[::1]x',
      'a\u00e9',
      'a,b',
    ])('Host %j is refused', (host) => {
      expect(scan(['Host', host]).invalid).toMatch(/invalid Host/);
    });

    it.each([
      '',
      'a',
      'API.Example.com',
      'a.b.c:8080',
      'a:',
      '127.0.0.1:80',
      '[::1]',
      '[::1]:8080',
      'under_score.local',
    ])('Host %j is accepted', (host) => {
      expect(scan(['Host', host]).invalid).toBeUndefined();
      expect(isValidHost(host)).toBe(true);
    });

    it('normaliseHost: case, port and trailing dot', () => {
      expect(normaliseHost('API.Example.COM.:8080')).toBe('api.example.com');
      expect(normaliseHost('[::1]:80')).toBe('[::1]');
      expect(normaliseHost(undefined)).toBe('');
    });
  });

  it(`refuses a request whose raw headers reach ${MAX_RAW_HEADER_ENTRIES} entries (node may have cut them)`, () => {
    const raw: string[] = [];
    for (let i = 0; i < MAX_RAW_HEADER_ENTRIES / 2; i++) raw.push('a', '1');
    expect(scanRequestHeaders(raw).invalid).toMatch(/too many header fields/);
    expect(scanRequestHeaders(raw.slice(2)).invalid).toBeUndefined();
  });
});

describe('requestIdFor', () => {
  it('keeps a sane id', () => {
    expect(requestIdFor('abc-123_x.y:z')).toBe('abc-123_x.y:z');
  });

  it.each(['', 'a b', 'a\r\nb', 'x'.repeat(129), 'x'.repeat(1000), '<script>', 'a\u00ff', 'a,b'])(
    'replaces %j with a generated id',
    (sent) => {
      const id = requestIdFor(sent);
      expect(id).not.toBe(sent);
      expect(id).toMatch(/^[0-9a-f-]{36}$/);
    },
  );
});

describe('clientIpFor', () => {
  const trusted = new TrustedProxies(['10.0.0.0/8', '127.0.0.1']);

  it('ignores X-Forwarded-For from an untrusted peer', () => {
    expect(clientIpFor('192.0.2.1', '1.2.3.4', trusted)).toBe('192.0.2.1');
  });

  it('takes the first untrusted hop from the right', () => {
    expect(clientIpFor('127.0.0.1', '6.6.6.6, 1.2.3.4, 10.0.0.5', trusted)).toBe('1.2.3.4');
  });

  it('accepts hops with ports and brackets', () => {
    expect(clientIpFor('127.0.0.1', '1.2.3.4:5678', trusted)).toBe('1.2.3.4');
    expect(clientIpFor('127.0.0.1', '[2001:db8::1]:443', trusted)).toBe('2001:db8::1');
    expect(clientIpFor('127.0.0.1', '::ffff:1.2.3.4', trusted)).toBe('1.2.3.4');
  });

  it.each(['garbage', 'unknown', '999.1.1.1', 'x'.repeat(10_000), '1.2.3.4, <script>', '1.2.3.4\u00ff'])(
    'a hop that is not an address (%j) stops the walk at the last trusted hop',
    (xff) => {
      expect(clientIpFor('127.0.0.1', xff, trusted)).toBe('127.0.0.1');
      expect(clientIpFor('127.0.0.1', `${xff}, 10.0.0.7`, trusted)).toBe('10.0.0.7');
    },
  );

  it('an all-trusted chain yields its leftmost hop; an empty one the peer', () => {
    expect(clientIpFor('127.0.0.1', '10.0.0.1, 10.0.0.2', trusted)).toBe('10.0.0.1');
    expect(clientIpFor('127.0.0.1', ' , ', trusted)).toBe('127.0.0.1');
  });
});
