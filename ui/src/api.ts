/**
 * Calls to the admin API of the port that served the console. The token lives in sessionStorage
 * (this tab, until it closes) and goes out as a bearer header; the console never sets a cookie.
 */
const TOKEN = 'gatehouse.adminToken';

export const session = {
  token: (): string | null => sessionStorage.getItem(TOKEN),
  signIn: (token: string): void => sessionStorage.setItem(TOKEN, token),
  signOut: (): void => sessionStorage.removeItem(TOKEN),
};

/** An RFC 9457 problem the API answered with. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    readonly detail: string,
    readonly body: Record<string, unknown>,
  ) {
    super(detail === '' ? `${status} ${code}` : `${code}: ${detail}`);
  }
}

export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { authorization: `Bearer ${session.token() ?? ''}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    credentials: 'omit',
    cache: 'no-store',
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const type = res.headers.get('content-type') ?? '';
  const data: unknown = type.includes('json') ? await res.json() : await res.text();
  if (!res.ok) {
    const p = (typeof data === 'object' && data !== null ? data : {}) as Record<string, unknown>;
    throw new ApiError(res.status, String(p.code ?? res.status), String(p.detail ?? ''), p);
  }
  return data as T;
}

export const get = <T>(path: string): Promise<T> => call<T>('GET', path);

/** The caller's role: a read token is refused every mutating call, so the console hides them. */
export type Role = 'admin' | 'read';
export type Caller = { id: string; role: Role };

export const whoAmI = (): Promise<Caller> => get<Caller>('/whoami');
