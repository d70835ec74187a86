import { describe, expect, it } from 'vitest';
import { AuthError, cookiePath, hasToken, tokenCookie } from '../src/auth';

describe('the token cookie', () => {
  it('is scoped to the directory the UI is served from', () => {
    expect(cookiePath('/')).toBe('/');
    expect(cookiePath('/index.html')).toBe('/');
    expect(cookiePath('/pulltrace/')).toBe('/pulltrace/');
    expect(cookiePath('/api/v1/namespaces/pt/services/pulltrace-server:http/proxy/')).toBe(
      '/api/v1/namespaces/pt/services/pulltrace-server:http/proxy/',
    );
  });
  it('carries the token percent-encoded, strict and secure over https', () => {
    expect(tokenCookie('  eyJ.a+b/c=  \n', '/pulltrace/', true)).toBe(
      'pulltrace_token=eyJ.a%2Bb%2Fc%3D; Path=/pulltrace/; SameSite=Strict; Secure',
    );
    expect(tokenCookie('Bearer abc', '/', false)).toBe('pulltrace_token=abc; Path=/; SameSite=Strict');
  });
  it('is removed with an empty token', () => {
    expect(tokenCookie('', '/', false)).toBe('pulltrace_token=; Path=/; SameSite=Strict; Max-Age=0');
  });
  it('is found among other cookies, and not when empty', () => {
    expect(hasToken('a=1; pulltrace_token=abc; b=2')).toBe(true);
    expect(hasToken('pulltrace_token=')).toBe(false);
    expect(hasToken('other_pulltrace_token=x')).toBe(false);
    expect(hasToken('')).toBe(false);
  });
});

describe('AuthError', () => {
  it('keeps the status and the server reason', () => {
    const e = new AuthError(403, 'bob may not get pulls.pulltrace.io');
    expect(e).toBeInstanceOf(Error);
    expect(e.status).toBe(403);
    expect(e.message).toBe('HTTP 403: bob may not get pulls.pulltrace.io');
  });
});
