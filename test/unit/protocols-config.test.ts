/** The protocols' config: defaults, and the checks across fields that name the field. */
import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load.js';
import { formatProblem } from '../../src/config/problems.js';
import { handshakeFailureReason } from '../../src/server/protocols/tls-errors.js';

const problems = (yaml: string) => {
  const r = loadConfigText(yaml, 'g.yaml', { env: {} });
  return r.ok ? [] : r.problems.map(formatProblem);
};

describe('listen.tls, listen.http2, listen.plain', () => {
  it('defaults: HTTP/2 offered over TLS, no h2c, modest flood limits', () => {
    const r = loadConfigText('listen: { port: 8443, tls: { cert: a.crt, key: a.key } }', 'g.yaml', {
      env: {},
    });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.config.listen.tls).toMatchObject({
      minVersion: 'TLSv1.2',
      certificates: [],
      watch: true,
      handshakeTimeout: 10_000,
    });
    expect(r.config.listen.http2).toMatchObject({
      enabled: true,
      cleartext: false,
      maxConcurrentStreams: 100,
      maxHeaderListSize: 16 * 1024,
      maxResets: 200,
      resetWindow: 10_000,
    });
    expect(r.config.listen.plain).toBeUndefined();
  });

  it('listen.plain needs listen.tls, on another port', () => {
    expect(problems('listen: { port: 8080, plain: { port: 8081 } }')).toEqual([
      expect.stringMatching(/listen\.plain: needs listen\.tls/),
    ]);
    expect(problems('listen: { port: 8443, tls: { cert: a, key: b }, plain: { port: 8443 } }')).toEqual([
      expect.stringMatching(/listen\.plain\.port: must differ from listen\.port/),
    ]);
  });

  it('refuses unknown versions, wildcards deeper than one label, and a redirect status that is not one', () => {
    expect(problems('listen: { tls: { cert: a, key: b, minVersion: TLSv1.1 } }')[0]).toMatch(
      /listen\.tls\.minVersion/,
    );
    expect(
      problems(
        'listen: { tls: { cert: a, key: b, certificates: [{ cert: c, key: d, serverNames: ["*.*.x"] }] } }',
      )[0],
    ).toMatch(/serverNames\[0\]/);
    expect(problems('listen: { tls: { cert: a, key: b }, plain: { redirectStatus: 200 } }')[0]).toMatch(
      /listen\.plain\.redirectStatus/,
    );
  });
});

describe('auth.mtls', () => {
  it('needs listen.tls.clientCertificates, and roles that exist', () => {
    expect(
      problems(`
rbac: { roles: { payer: [payments:write] } }
auth: { mtls: { consumers: { billing: { roles: [payer] } } } }
`),
    ).toEqual([expect.stringMatching(/auth\.mtls: needs listen\.tls\.clientCertificates/)]);
    expect(
      problems(`
listen: { tls: { cert: a, key: b, clientCertificates: { ca: c } } }
rbac: { roles: { payer: [payments:write] } }
auth: { mtls: { consumers: { billing: { roles: [nobody] } } } }
`),
    ).toEqual([
      expect.stringMatching(/auth\.mtls\.consumers\.billing\.roles: "nobody" is not in rbac\.roles/),
    ]);
  });
});

describe('handshake failure reasons', () => {
  it('a small fixed set, whatever the error code', () => {
    const reason = (code: string) => handshakeFailureReason(Object.assign(new Error('x'), { code }));
    expect(reason('ERR_SSL_NO_SHARED_CIPHER')).toBe('no_shared_cipher');
    expect(reason('ERR_SSL_HTTP_REQUEST')).toBe('not_tls');
    expect(reason('ERR_SSL_TLSV1_ALERT_UNKNOWN_CA')).toBe('alert');
    expect(reason('ERR_SOMETHING_NEW')).toBe('other');
    expect(handshakeFailureReason(new Error('no code'))).toBe('other');
  });
});
