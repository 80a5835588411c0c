/**
 * How a service's pools connect to its targets: TLS (CA bundle, client certificate, SNI,
 * verification) and the HTTP version (HTTP/1.1, h2 by ALPN, h2c by prior knowledge).
 *
 * The PEM files are read when the service is built (startup, and every reload: see runtime.ts,
 * which rebuilds a service with TLS files so a rotated CA or client certificate is picked up),
 * never per request. The loader checks them first (`checkUpstreamTlsFiles` in config.ts), so a missing or
 * wrong file is a config problem naming the field, not a failure at the first request.
 *
 * TLS sessions are resumed by undici's connector (a session cache per server name), and each
 * pooled connection carries many requests: a handshake per connection, not per request.
 */
import { readFileSync } from 'node:fs';
import type { ServiceConfig, UpstreamTlsConfig } from './config.js';

/** The part of undici's Client/Pool options that says how to connect. */
/** What the TLS connector is given (the ConnectionOptions of node:tls the gateway sets). */
export type TlsConnect = {
  rejectUnauthorized?: boolean;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  servername?: string;
  /** here, not beside `allowH2`: undici's Pool builds the connector from `connect` and drops a top-level useH2c */
  useH2c?: boolean;
};

export type UpstreamConnect = {
  readonly connect?: TlsConnect;
  readonly allowH2?: boolean;
};

/** Pool options for a service's targets; reads the service's PEM files (not on the hot path). */
export function upstreamConnect(
  config: ServiceConfig,
  read: (file: string) => Buffer = (file) => readFileSync(file),
): UpstreamConnect {
  const out: { connect?: TlsConnect; allowH2?: boolean } = {};
  if (config.protocol === 'h2') out.allowH2 = true;
  else if (config.protocol === 'h2c') out.connect = { useH2c: true };
  const tls = config.tls;
  if (tls === undefined) return out;
  const connect: TlsConnect = { rejectUnauthorized: tls.verify };
  if (tls.ca !== undefined) connect.ca = read(tls.ca);
  if (tls.cert !== undefined) connect.cert = read(tls.cert);
  if (tls.key !== undefined) connect.key = read(tls.key);
  if (tls.serverName !== undefined) connect.servername = tls.serverName;
  out.connect = connect;
  return out;
}

/** What the admin API shows of a service's TLS (never a file's content). */
export function tlsSnapshot(tls: UpstreamTlsConfig | undefined) {
  if (tls === undefined) return null;
  return {
    verify: tls.verify,
    ca: tls.ca ?? 'system',
    clientCertificate: tls.cert ?? null,
    serverName: tls.serverName ?? null,
  };
}

/** The service's pools were built from files, which may have changed since. */
export function readsTlsFiles(config: ServiceConfig): boolean {
  const tls = config.tls;
  return tls !== undefined && (tls.ca !== undefined || tls.cert !== undefined || tls.key !== undefined);
}
