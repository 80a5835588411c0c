/**
 * JWT test kit: key pairs, signed tokens, hand-made (hostile) tokens, and a JWKS server on
 * 127.0.0.1:0 that can rotate keys, fail, hold requests unanswered, and counts the requests it
 * gets.
 */
import { KeyObject, sign as rsaSign, type webcrypto } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  exportJWK,
  exportSPKI,
  generateKeyPair,
  SignJWT,
  type CryptoKey,
  type JWK,
  type JWTPayload,
} from 'jose';

export type TestKey = {
  readonly kid: string;
  readonly alg: string;
  readonly privateKey: CryptoKey;
  readonly publicJwk: JWK;
  readonly publicPem: string;
};

export async function makeKey(kid: string, alg = 'RS256'): Promise<TestKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  return {
    kid,
    alg,
    privateKey,
    publicJwk: { ...jwk, kid, alg, use: 'sig' },
    publicPem: await exportSPKI(publicKey),
  };
}

export const ISSUER = 'https://auth.example.test/';
export const AUDIENCE = 'orders-api';

/**
 * A token signed by `key`: `iss`, `aud`, `sub`, `iat` and `exp` (+5 min) unless `claims` says
 * otherwise (a claim set to undefined is left out); `header` adds or overrides header parameters.
 */
export async function sign(
  key: TestKey,
  claims: Record<string, unknown> = {},
  header: Record<string, unknown> = {},
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const payload: Record<string, unknown> = {
    iss: ISSUER,
    aud: AUDIENCE,
    sub: 'user-1',
    iat: now,
    exp: now + 300,
  };
  for (const [k, v] of Object.entries(claims)) {
    if (v === undefined) delete payload[k];
    else payload[k] = v;
  }
  return new SignJWT(payload as JWTPayload)
    .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...header })
    .sign(key.privateKey);
}

export const b64url = (data: string | Buffer): string => Buffer.from(data).toString('base64url');

/** a token with any header and payload, and the given signature segment (unsigned by default) */
export function rawToken(header: unknown, payload: unknown, signature = ''): string {
  return `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}.${signature}`;
}

/** an RS256 token over any header and payload, signed by hand (jose refuses to sign some) */
export function signRaw(key: TestKey, header: unknown, payload: unknown): string {
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  const privateKey = KeyObject.from(key.privateKey as unknown as webcrypto.CryptoKey);
  return `${input}.${rsaSign('sha256', Buffer.from(input), privateKey).toString('base64url')}`;
}

export function claims(extra: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Math.floor(Date.now() / 1000);
  return { iss: ISSUER, aud: AUDIENCE, sub: 'user-1', iat: now, exp: now + 300, ...extra };
}

/** `hold`: requests get no answer until `release()` (or until the client gives up) */
export type JwksMode = 'up' | 'error' | 'reset' | 'hold';

export class JwksServer {
  /** requests received, all paths */
  requests = 0;
  mode: JwksMode = 'up';
  cacheControl: string | null = null;
  /** served instead of the key set when not null */
  body: string | null = null;
  private keys: JWK[];
  /** requests held (`hold` mode) whose client is still waiting */
  private readonly parked = new Set<() => void>();

  private constructor(
    readonly server: Server,
    keys: readonly TestKey[],
  ) {
    this.keys = keys.map((k) => k.publicJwk);
  }

  static async start(keys: readonly TestKey[] = []): Promise<JwksServer> {
    const server = createServer();
    const jwks = new JwksServer(server, keys);
    server.on('request', (req, res) => {
      jwks.requests++;
      if (jwks.mode === 'reset') {
        req.socket.destroy();
        return;
      }
      if (jwks.mode === 'error') {
        res.writeHead(503, { 'content-type': 'text/plain' }).end('down');
        return;
      }
      const answer = () => {
        const body = jwks.body ?? JSON.stringify({ keys: jwks.keys });
        res.writeHead(200, {
          'content-type': 'application/json',
          ...(jwks.cacheControl === null ? {} : { 'cache-control': jwks.cacheControl }),
        });
        res.end(body);
      };
      if (jwks.mode === 'hold') {
        jwks.parked.add(answer);
        res.on('close', () => jwks.parked.delete(answer));
        return;
      }
      answer();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return jwks;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/.well-known/jwks.json`;
  }

  /** requests held in `hold` mode, still waiting for their answer */
  get held(): number {
    return this.parked.size;
  }

  /** answers the held requests with the current keys (the mode stays as it is) */
  release(): void {
    for (const answer of [...this.parked]) {
      this.parked.delete(answer);
      answer();
    }
  }

  /** the keys served from now on (a rotation) */
  setKeys(keys: readonly TestKey[]): void {
    this.keys = keys.map((k) => k.publicJwk);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.closeAllConnections();
      this.server.close(() => resolve());
    });
  }
}
