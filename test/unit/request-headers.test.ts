import { describe, expect, it } from 'vitest';
import { isValidHost, normaliseHost } from '../../src/router/host.js';
import { forwardIdentity } from '../../src/stages/authenticate/upstream-identity.js';
import { forwardedElement, isValidForwarded, tokenOrQuoted } from '../../src/server/forwarded.js';
import {
  appendForwarded,
  clientIpFor,
  TrustedProxies,
  type ForwardedFrom,
} from '../../src/server/client-address.js';
import { requestIdFor } from '../../src/server/request-id.js';
import { MAX_RAW_HEADER_ENTRIES, scanRequestHeaders } from '../../src/server/request-headers.js';

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
  ])(
    'removes %s, which CGI-style upstreams read as the header the gateway controls, even when `_` is allowed',
    (name) => {
      const raw = [
        ['Host', 'a'],
        [name, 'spoofed'],
        ['X_Custom', 'kept'],
      ].flat();
      expect(scanRequestHeaders(raw, false, 'allow').forward).toEqual(['x_custom', 'kept']);
      expect(scanRequestHeaders(raw, true, 'allow').forward).toEqual(['x_custom', 'kept']);
    },
  );

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
    it.each(['websocket, h2c', 'h2c, websocket', 'TLS/1.0'])(
      'Connection: upgrade with Upgrade: %s is refused',
      (proto) => {
        expect(scan(['Connection', 'Upgrade, HTTP2-Settings'], ['Upgrade', proto]).invalid).toMatch(
          /unsupported Upgrade/,
        );
      },
    );

    it('an h2c offer is not refused (it is answered as HTTP/1.1); its headers are not forwarded', () => {
      const s = scan(
        ['Connection', 'Upgrade, HTTP2-Settings'],
        ['Upgrade', 'h2c'],
        ['HTTP2-Settings', 'AAMAAABkAAQCAAAAAAIAAAAA'],
        ['Accept', '1'],
      );
      expect(s.invalid).toBeUndefined();
      expect(s.forward).toEqual(['accept', '1']);
    });

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

    it('HTTP/2: :authority is the Host; a Host beside it must agree; pseudo-headers are not forwarded', () => {
      const h2 = (...pairs: Array<[string, string]>) =>
        scan([':method', 'GET'], [':path', '/x'], [':scheme', 'https'], ...pairs);
      const s = h2([':authority', 'api.test'], ['accept', '1']);
      expect(s.invalid).toBeUndefined();
      expect(s.host).toBe('api.test');
      expect(s.forward).toEqual(['accept', '1']);
      expect(h2([':authority', 'api.test'], ['host', 'api.test']).invalid).toBeUndefined();
      expect(h2([':authority', 'api.test'], ['host', 'admin.internal']).invalid).toMatch(
        /differs from :authority/,
      );
      expect(h2([':authority', 'a b']).invalid).toMatch(/invalid :authority/);
      expect(h2([':protocol', 'websocket'], [':authority', 'a']).forward).toEqual([]);
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

describe('scanRequestHeaders: credentials, proxy and rewrite headers, underscores', () => {
  it.each([
    [['Authorization', 'Bearer a', 'Authorization', 'Bearer b']],
    [['authorization', 'Bearer a', 'AUTHORIZATION', 'Bearer a']],
    [['Authorization', '', 'Authorization', 'Bearer a']],
  ])('%j: refused (one credential or none)', (raw) => {
    expect(scanRequestHeaders(raw).invalid).toBe('multiple Authorization headers');
  });

  it('one Authorization is forwarded as sent (routes with auth rewrite it later)', () => {
    expect(scan(['Authorization', 'Basic eA==']).forward).toEqual(['authorization', 'Basic eA==']);
  });

  it('drops rewrite headers and X-Real-IP, from any peer', () => {
    const raw = [
      ['X-Original-URL', '/admin'],
      ['X-Rewrite-URL', '/admin'],
      ['X-Original-URI', '/admin'],
      ['X-Override-URL', '/admin'],
      ['X-Forwarded-Uri', '/admin'],
      ['X-Envoy-Original-Path', '/admin'],
      ['X-Real-IP', '6.6.6.6'],
      ['Accept', '1'],
    ].flat();
    expect(scanRequestHeaders(raw, false).forward).toEqual(['accept', '1']);
    expect(scanRequestHeaders(raw, true).forward).toEqual(['accept', '1']);
  });

  it('keeps client-address, scheme, port and start headers from a trusted peer only', () => {
    const raw = [
      ['True-Client-IP', '1.1.1.1'],
      ['X-Client-IP', '1.1.1.1'],
      ['Client-IP', '1.1.1.1'],
      ['CF-Connecting-IP', '1.1.1.1'],
      ['X-Forwarded-Port', '443'],
      ['X-Forwarded-Ssl', 'on'],
      ['X-Request-Start', 't=1'],
    ].flat();
    expect(scanRequestHeaders(raw, false).forward).toEqual([]);
    expect(names(scanRequestHeaders(raw, true).forward)).toEqual([
      'true-client-ip',
      'x-client-ip',
      'client-ip',
      'cf-connecting-ip',
      'x-forwarded-port',
      'x-forwarded-ssl',
      'x-request-start',
    ]);
    // Connection still names them away (hop-by-hop)
    expect(scanRequestHeaders([...raw, 'Connection', 'x-forwarded-port'], true).forward).not.toContain(
      'x-forwarded-port',
    );
  });

  it('reads Forwarded (lines joined) and X-Forwarded-Prefix without forwarding them', () => {
    const s = scan(['Forwarded', 'for=1.1.1.1'], ['forwarded', 'for=2.2.2.2'], ['X-Forwarded-Prefix', '/p']);
    expect(s.forward).toEqual([]);
    expect(s.forwarded).toBe('for=1.1.1.1, for=2.2.2.2');
    expect(s.forwardedPrefix).toBe('/p');
  });

  it('underscores: dropped by default, refused with reject, forwarded with allow', () => {
    const raw = ['X_Custom', '1', 'Accept', '1'];
    expect(scanRequestHeaders(raw).forward).toEqual(['accept', '1']);
    expect(scanRequestHeaders(raw).invalid).toBeUndefined();
    expect(scanRequestHeaders(raw, false, 'reject').invalid).toBe('header name with an underscore');
    expect(scanRequestHeaders(raw, false, 'allow').forward).toEqual(['x_custom', '1', 'accept', '1']);
  });

  it.each([
    'X_Real_IP',
    'x_original_url',
    'X_Rewrite_URL',
    'true_client_ip',
    'X_Forwarded_Port',
    'X_Forwarded_Prefix',
  ])('with allow, %s (a spelling of a header the gateway controls) is still dropped', (name) => {
    expect(scanRequestHeaders([name, 'x'], true, 'allow').forward).toEqual([]);
  });
});

describe('Forwarded (RFC 7239)', () => {
  it('the gateway element: for, proto, host; IPv6 quoted and bracketed; host quoted when not a token', () => {
    expect(forwardedElement('192.0.2.1', 'api.example')).toBe('for=192.0.2.1;proto=http;host=api.example');
    expect(forwardedElement('2001:db8::1', 'api.example:8080')).toBe(
      'for="[2001:db8::1]";proto=http;host="api.example:8080"',
    );
    expect(forwardedElement('::1', '[::1]:80')).toBe('for="[::1]";proto=http;host="[::1]:80"');
    expect(forwardedElement('', undefined)).toBe('for=unknown;proto=http');
    expect(forwardedElement('192.0.2.1', '')).toBe('for=192.0.2.1;proto=http');
  });

  it('tokenOrQuoted escapes quotes and backslashes', () => {
    expect(tokenOrQuoted('a.b')).toBe('a.b');
    expect(tokenOrQuoted('a"b\\c')).toBe('"a\\"b\\\\c"');
    expect(tokenOrQuoted('')).toBe('""');
  });

  it.each([
    'for=192.0.2.43',
    'for=192.0.2.43, for=198.51.100.17;by=203.0.113.60;proto=http;host=example.com',
    'for="[2001:db8:cafe::17]:4711"',
    'For="_gazonk"',
    'for=unknown;host="a, b;c=d"',
    'for="a\\"b"',
    'for=a;;proto=http',
    'for=a,,for=b',
    'for=a , for=b',
    'for=a; proto=http',
  ])('%j parses', (v) => expect(isValidForwarded(v)).toBe(true));

  it.each([
    'for="1.2.3.4',
    'for="1.2.3.4\\"',
    'for=',
    'for',
    'for=a b',
    'for=a"',
    '=a',
    'for=a,2.2.2.2',
    'for=a;proto',
    'for="a\u0001"',
    'for=é',
  ])('%j does not parse', (v) => expect(isValidForwarded(v)).toBe(false));
});

describe('appendForwarded', () => {
  const sent = (over: Partial<ForwardedFrom> = {}): ForwardedFrom => ({
    host: 'gw.test',
    forwardedFor: undefined,
    forwardedProto: undefined,
    forwardedHost: undefined,
    forwarded: undefined,
    forwardedPrefix: undefined,
    ...over,
  });
  const build = (...args: [boolean, string, ForwardedFrom, string]) => {
    const h: string[] = [];
    appendForwarded(h, 'rid', '10.0.0.1', ...args);
    const out: Record<string, string> = {};
    for (let i = 0; i < h.length; i += 2) out[h[i] as string] = h[i + 1] as string;
    return out;
  };

  it('untrusted peer: only what the gateway knows', () => {
    const all = sent({
      forwardedFor: '6.6.6.6',
      forwardedProto: 'https',
      forwardedHost: 'evil',
      forwarded: 'for=6.6.6.6',
      forwardedPrefix: '/evil',
    });
    expect(build(false, '10.0.0.1', all, '')).toEqual({
      'x-request-id': 'rid',
      'x-forwarded-for': '10.0.0.1',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'gw.test',
      'x-real-ip': '10.0.0.1',
      forwarded: 'for=10.0.0.1;proto=http;host=gw.test',
    });
    expect(build(false, '10.0.0.1', all, '/api')['x-forwarded-prefix']).toBe('/api');
  });

  it("trusted peer: the proxy's chains extended, its prefix before the route's", () => {
    const h = build(
      true,
      '203.0.113.9',
      sent({ forwardedFor: '203.0.113.9', forwarded: 'for=203.0.113.9', forwardedPrefix: '/edge/' }),
      '/api',
    );
    expect(h['x-forwarded-for']).toBe('203.0.113.9, 10.0.0.1');
    expect(h['x-real-ip']).toBe('203.0.113.9');
    expect(h.forwarded).toBe('for=203.0.113.9, for=10.0.0.1;proto=http;host=gw.test');
    expect(h['x-forwarded-prefix']).toBe('/edge/api');
    expect(build(true, '10.0.0.1', sent({ forwardedPrefix: '/edge' }), '')['x-forwarded-prefix']).toBe(
      '/edge',
    );
  });

  it('trusted peer, malformed or blank Forwarded: the gateway element alone', () => {
    for (const forwarded of ['for="6.6.6.6', ' ', 'for=a,b'])
      expect(build(true, '10.0.0.1', sent({ forwarded }), '').forwarded).toBe(
        'for=10.0.0.1;proto=http;host=gw.test',
      );
  });
});

describe('forwardIdentity', () => {
  const consumer = { id: 'u1', tier: 'pro', roles: ['a', 'b'] };
  const rules = { keyHeader: 'x-api-key', forwardJwt: true };

  it('JWT: Authorization becomes exactly the verified token; the key header goes', () => {
    const h = ['accept', '1', 'authorization', 'bearer   tok ', 'x-api-key', 'k', 'x_api_key', 'k'];
    forwardIdentity(h, consumer, 'tok', rules);
    expect(h).toEqual([
      'accept',
      '1',
      'authorization',
      'Bearer tok',
      'x-consumer-id',
      'u1',
      'x-consumer-tier',
      'pro',
      'x-consumer-roles',
      'a,b',
    ]);
  });

  it('forwardCredentials false, or another method: no Authorization at all', () => {
    const a = ['authorization', 'Bearer tok'];
    forwardIdentity(a, consumer, 'tok', { ...rules, forwardJwt: false });
    expect(a).not.toContain('authorization');
    const b = ['authorization', 'Bearer forged', 'x-api-key', 'k'];
    forwardIdentity(b, consumer, null, rules);
    expect(b.filter((_v, i) => i % 2 === 0)).toEqual([
      'x-consumer-id',
      'x-consumer-tier',
      'x-consumer-roles',
    ]);
  });

  it('an Authorization already removed (named by Connection) is not added back', () => {
    const h: string[] = [];
    forwardIdentity(h, consumer, 'tok', rules);
    expect(h).not.toContain('authorization');
  });

  it('identity values outside printable ASCII are %-encoded', () => {
    const h: string[] = [];
    forwardIdentity(h, { id: 'ü\r\nx', tier: '', roles: [] }, null, { keyHeader: null, forwardJwt: true });
    expect(h.slice(0, 2)).toEqual(['x-consumer-id', '%C3%BC%0D%0Ax']);
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
