/**
 * The proxy port's certificates: a default one and more chosen by SNI, read from PEM files,
 * and re-read when the files change (their directories are watched, so the symlink swap of a
 * Kubernetes Secret is seen), on SIGHUP and on `POST /reload`. A re-read builds every context
 * first and swaps them in at once (`setSecureContext` for the default, the SNI map by
 * reference): open connections keep the context they were made with, new ones get the new. A
 * file that cannot be read or a key that does not match its certificate keeps the running set
 * (warned and counted); at start it is an error.
 */
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import type { Logger } from '../../observability/logger.js';
import type { TlsConfig } from './config.js';

/**
 * TLS 1.2 suites: forward secrecy (ECDHE) and AEAD ciphers only, as Mozilla's "intermediate"
 * profile; the TLS 1.3 suites are the standard three.
 */
export const MODERN_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/** What the server is created with, and what a re-read produces. */
export type CertificateSet = {
  /** the default certificate's options (setSecureContext takes the same) */
  readonly defaults: SecureContextOptions;
  /** exact names, lower-case */
  readonly exact: ReadonlyMap<string, SecureContext>;
  /** `*.example.com` stored as `example.com` */
  readonly wildcard: ReadonlyMap<string, SecureContext>;
};

export type ReloadOutcome = 'success' | 'failure';

export class CertificateStore {
  private current: CertificateSet | null = null;
  private watchers: FSWatcher[] = [];
  private debounce: NodeJS.Timeout | null = null;
  private loading: Promise<ReloadOutcome> | null = null;
  /** the server to give the new default to (setSecureContext) */
  private target: { setSecureContext(options: SecureContextOptions): void } | null = null;

  constructor(
    private readonly config: TlsConfig,
    private readonly logger: Logger,
    private readonly counted: (outcome: ReloadOutcome) => void = () => undefined,
  ) {}

  /** Reads every file (at start): throws, naming the file, when one is unusable. */
  async load(): Promise<CertificateSet> {
    this.current = await readCertificates(this.config);
    return this.current;
  }

  /** The server whose default context a re-read replaces. */
  attach(server: { setSecureContext(options: SecureContextOptions): void }): void {
    this.target = server;
  }

  /** SNICallback: the context for `servername`, or the default (undefined). */
  readonly sni = (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void): void => {
    const set = this.current;
    if (set === null) return cb(null);
    const name = servername.toLowerCase();
    let ctx = set.exact.get(name);
    if (ctx === undefined) {
      const dot = name.indexOf('.');
      if (dot > 0) ctx = set.wildcard.get(name.slice(dot + 1));
    }
    cb(null, ctx);
  };

  /** Re-reads the files; the running set stays when that fails. Concurrent calls share one read. */
  reload(trigger: string): Promise<ReloadOutcome> {
    this.loading ??= this.doReload(trigger).finally(() => (this.loading = null));
    return this.loading;
  }

  private async doReload(trigger: string): Promise<ReloadOutcome> {
    try {
      const next = await readCertificates(this.config);
      this.target?.setSecureContext(next.defaults);
      this.current = next;
      this.counted('success');
      this.logger.info({ trigger }, 'TLS certificates reloaded');
      return 'success';
    } catch (err) {
      this.counted('failure');
      this.logger.warn(
        { trigger, reason: err instanceof Error ? err.message : String(err) },
        'TLS certificates not reloaded; keeping the ones in use',
      );
      return 'failure';
    }
  }

  /** Re-reads when a certificate, key or CA file changes (a burst of events is one re-read). */
  watch(): void {
    if (!this.config.watch || this.watchers.length > 0) return;
    const files = new Set(filesOf(this.config).map((f) => resolve(f)));
    const dirs = new Set([...files].map((f) => dirname(f)));
    for (const dir of dirs) {
      try {
        const watcher = watch(dir, { persistent: false }, () => this.changed());
        watcher.on('error', (err) => this.logger.warn({ err, dir }, 'watching TLS certificate files failed'));
        this.watchers.push(watcher);
      } catch (err) {
        this.logger.warn(
          { err, dir },
          'cannot watch TLS certificate files; they are re-read on SIGHUP and POST /reload',
        );
      }
    }
  }

  private changed(): void {
    if (this.debounce !== null) clearTimeout(this.debounce);
    // a certificate and its key are rarely written in the same instant
    this.debounce = setTimeout(() => {
      this.debounce = null;
      void this.reload('watch');
    }, 200);
    this.debounce.unref();
  }

  close(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    if (this.debounce !== null) clearTimeout(this.debounce);
  }
}

function filesOf(config: TlsConfig): string[] {
  const files = [config.cert, config.key, ...config.certificates.flatMap((c) => [c.cert, c.key])];
  if (config.clientCertificates) files.push(config.clientCertificates.ca);
  return files;
}

async function read(file: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    throw new Error(`listen.tls: cannot read the ${what} ${file}: ${(err as Error).message}`);
  }
}

/** Every context of `config`, built (a key that does not match its certificate throws here). */
export async function readCertificates(config: TlsConfig): Promise<CertificateSet> {
  const common: SecureContextOptions = {
    minVersion: config.minVersion,
    ciphers: config.ciphers ?? MODERN_CIPHERS,
    honorCipherOrder: true,
  };
  if (config.clientCertificates) common.ca = await read(config.clientCertificates.ca, 'client CA file');
  const build = async (certFile: string, keyFile: string): Promise<SecureContextOptions> => {
    const options = {
      ...common,
      cert: await read(certFile, 'certificate'),
      key: await read(keyFile, 'key'),
    };
    try {
      createSecureContext(options); // a key that does not match, a file that is not PEM
    } catch (err) {
      throw new Error(`listen.tls: ${certFile} with ${keyFile}: ${(err as Error).message}`);
    }
    return options;
  };
  const defaults = await build(config.cert, config.key);
  const exact = new Map<string, SecureContext>();
  const wildcard = new Map<string, SecureContext>();
  for (const entry of config.certificates) {
    const options = await build(entry.cert, entry.key);
    const ctx = createSecureContext(options);
    const names = entry.serverNames ?? dnsNames(options.cert as Buffer);
    if (names.length === 0)
      throw new Error(`listen.tls: ${entry.cert} names no DNS host (subjectAltName): give serverNames`);
    for (const raw of names) {
      const name = raw.toLowerCase();
      // the first certificate that names a host wins
      if (name.startsWith('*.')) {
        if (!wildcard.has(name.slice(2))) wildcard.set(name.slice(2), ctx);
      } else if (!exact.has(name)) exact.set(name, ctx);
    }
  }
  return { defaults, exact, wildcard };
}

/** The DNS names of a PEM certificate's subjectAltName. */
function dnsNames(pem: Buffer): string[] {
  const san = new X509Certificate(pem).subjectAltName ?? '';
  return san
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4));
}
