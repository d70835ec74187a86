// Reader authentication (PULLTRACE_READ_AUTH=kubernetes, docs/security.md): the server wants a
// Kubernetes bearer token. The UI keeps a pasted token in the cookie `pulltrace_token`, which
// every fetch() of the API and of the event stream sends by itself (same origin), also through
// the API server's service proxy, which removes Authorization headers but passes cookies.

export const TOKEN_COOKIE = 'pulltrace_token';

/** The answer of a request the server refused for want of a (good enough) token. */
export class AuthError extends Error {
  constructor(
    readonly status: 401 | 403,
    readonly reason: string,
  ) {
    super(`HTTP ${status}: ${reason}`);
  }
}

/** The error of a request the server refused: an AuthError for 401 and 403, else an Error; both
 * with the reason the server's JSON answer gives. */
export async function refusal(res: Response): Promise<Error> {
  let reason = '';
  try {
    const body = await res.json();
    if (body && typeof body.error === 'string') reason = body.error;
  } catch {
    /* not JSON */
  }
  if (res.status === 401 || res.status === 403) return new AuthError(res.status, reason || res.statusText);
  return new Error(reason ? `HTTP ${res.status}: ${reason}` : `HTTP ${res.status}`);
}

/** The cookie's path: the directory the UI is served from (it may sit behind a path prefix). */
export function cookiePath(pathname: string): string {
  const i = pathname.lastIndexOf('/');
  return i < 0 ? '/' : pathname.slice(0, i + 1);
}

/** The Set-Cookie string for `token` (empty token: remove the cookie). */
export function tokenCookie(token: string, pathname: string, https: boolean): string {
  const t = token.trim().replace(/^Bearer\s+/i, '');
  const attrs = `; Path=${cookiePath(pathname)}; SameSite=Strict${https ? '; Secure' : ''}`;
  return t ? `${TOKEN_COOKIE}=${encodeURIComponent(t)}${attrs}` : `${TOKEN_COOKIE}=${attrs}; Max-Age=0`;
}

export function hasToken(cookies: string): boolean {
  return cookies.split(';').some((c) => {
    const s = c.trim();
    return s.startsWith(`${TOKEN_COOKIE}=`) && s.length > TOKEN_COOKIE.length + 1;
  });
}

/** Stores (or with '' forgets) the token and reloads, so that every request carries it. */
export function signIn(token: string) {
  document.cookie = tokenCookie(token, window.location.pathname, window.location.protocol === 'https:');
  window.location.reload();
}
