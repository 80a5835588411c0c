/** `services.*.tls` and `protocol`: the schema, the cross-field checks, and the files they name. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfigFile, loadConfigText } from '../../src/config/load.js';
import { formatProblem } from '../../src/config/problems.js';
import { upstreamConnect } from '../../src/upstream/tls.js';
import { makeTestPki, type TestPki } from '../helpers/test-certs.js';

const yaml = (service: string) =>
  `services:\n  s: ${service}\nroutes:\n  - { name: r, match: { path: /x }, service: s }\n`;
const problems = (service: string) => {
  const r = loadConfigText(yaml(service), 'g.yaml', { env: {} });
  return r.ok ? [] : r.problems.map(formatProblem);
};

describe('services.*.tls and protocol', () => {
  it('defaults: HTTP/1.1, no tls section (system CAs, verification on)', () => {
    const r = loadConfigText(yaml('{ targets: ["https://10.0.0.5:8443"] }'), 'g.yaml', { env: {} });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const s = r.config.services.s;
    expect(s?.protocol).toBe('http1');
    expect(s?.tls).toBeUndefined();
    expect(s && upstreamConnect(s)).toEqual({});
    const v = loadConfigText(
      yaml('{ targets: ["https://10.0.0.5:8443"], tls: { serverName: a.b } }'),
      'g.yaml',
      {
        env: {},
      },
    );
    expect(v.ok && v.config.services.s?.tls).toEqual({ serverName: 'a.b', verify: true });
  });

  it('needs cert and key together, https targets for tls and h2, http targets for h2c', () => {
    expect(problems('{ targets: ["https://a:1"], tls: { cert: c.pem } }')).toEqual([
      'g.yaml:2:34: services.s.tls.key: is required with tls.cert: the client certificate needs its private key',
    ]);
    expect(problems('{ targets: ["https://a:1"], tls: { key: k.pem } }')).toEqual([
      'g.yaml:2:34: services.s.tls.cert: is required with tls.key: the private key needs its client certificate',
    ]);
    expect(problems('{ targets: ["http://a:1"], tls: { verify: false } }')).toEqual([
      'g.yaml:2:33: services.s.tls: applies to `https://` targets only, and this service has none',
    ]);
    expect(problems('{ targets: ["http://a:1"], protocol: h2 }')).toEqual([
      'g.yaml:2:33: services.s.protocol: h2 is negotiated over TLS (ALPN) and needs `https://` targets; for cleartext HTTP/2 use "h2c"',
    ]);
    expect(problems('{ discovery: { dns: a.b, port: 443, scheme: https }, protocol: h2c }')).toEqual([
      'g.yaml:2:59: services.s.protocol: h2c is cleartext HTTP/2 and needs `http://` targets; over TLS use "h2"',
    ]);
    expect(problems('{ targets: ["http://a:1"], protocol: h3 }')[0]).toMatch(/services\.s\.protocol/);
    expect(problems('{ targets: ["https://a:1"], tls: { verify: "no" } }')[0]).toMatch(
      /services\.s\.tls\.verify/,
    );
    expect(problems('{ targets: ["https://a:1"], tls: { ciphers: x } }')[0]).toMatch(/services\.s\.tls/);
  });

  it('builds the connector options: h2 by ALPN, h2c by prior knowledge, TLS from the files', () => {
    const r = loadConfigText(
      yaml(
        '{ targets: ["https://a:1"], protocol: h2, tls: { ca: ca.pem, cert: c.pem, key: k.pem, serverName: a.b, verify: false } }',
      ),
      'g.yaml',
      { env: {} },
    );
    expect(r.ok).toBe(true);
    if (!r.ok || !r.config.services.s) return;
    const read = (file: string) => Buffer.from(`<${file}>`);
    expect(upstreamConnect(r.config.services.s, read)).toEqual({
      allowH2: true,
      connect: {
        rejectUnauthorized: false,
        ca: Buffer.from('<ca.pem>'),
        cert: Buffer.from('<c.pem>'),
        key: Buffer.from('<k.pem>'),
        servername: 'a.b',
      },
    });
    const c = loadConfigText(yaml('{ targets: ["http://a:1"], protocol: h2c }'), 'g.yaml', { env: {} });
    expect(c.ok && upstreamConnect(c.config.services.s as never)).toEqual({ connect: { useH2c: true } });
  });
});

describe('services.*.tls files', () => {
  let pki: TestPki;
  let dir: string;
  beforeAll(() => {
    pki = makeTestPki();
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-tls-config-'));
  });
  afterAll(() => {
    pki?.remove();
    rmSync(dir, { recursive: true, force: true });
  });

  const loadFile = async (tls: string) => {
    const file = join(dir, 'g.yaml');
    writeFileSync(file, yaml(`{ targets: ["https://a:1"], tls: ${tls} }`));
    const r = await loadConfigFile(file, { env: {} });
    return r.ok ? [] : r.problems.map((p) => formatProblem(p).replace(`${file}:`, ''));
  };

  it('takes a readable CA bundle and a client certificate with its key', async () => {
    const f = pki.files;
    expect(await loadFile(`{ ca: "${f.ca}", cert: "${f.clientCert}", key: "${f.clientKey}" }`)).toEqual([]);
  });

  it('names the field of a file that is missing, not PEM, or a key that does not match', async () => {
    const f = pki.files;
    const notPem = join(dir, 'not.pem');
    writeFileSync(notPem, 'hello');
    expect(await loadFile(`{ ca: "${join(dir, 'missing.pem')}" }`)).toEqual([
      `2:41: services.s.tls.ca: cannot read "${join(dir, 'missing.pem')}": no such file`,
    ]);
    expect((await loadFile(`{ ca: "${notPem}" }`))[0]).toContain(
      `services.s.tls.ca: "${notPem}" holds no PEM certificate`,
    );
    expect((await loadFile(`{ cert: "${f.clientKey}", key: "${f.clientKey}" }`))[0]).toContain(
      'services.s.tls.cert: ',
    );
    expect((await loadFile(`{ cert: "${f.clientCert}", key: "${f.clientCert}" }`))[0]).toContain(
      'services.s.tls.key: ',
    );
    expect((await loadFile(`{ cert: "${f.clientCert}", key: "${f.serverKey}" }`))[0]).toContain(
      `services.s.tls.key: "${f.serverKey}" is not the private key of the certificate in "${f.clientCert}"`,
    );
  });
});
