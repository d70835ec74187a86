import { useState } from 'react';
import { hasToken, signIn, type AuthError } from '../auth';

/** What the UI shows instead of the pulls when the server wants a token (docs/security.md). */
export function SignIn({ error }: { error: AuthError }) {
  const [token, setToken] = useState('');
  const signedIn = hasToken(document.cookie);
  return (
    <section className="signin" aria-labelledby="signin-title">
      <h2 id="signin-title">{error.status === 403 ? 'Not allowed to read' : 'Sign in to Pulltrace'}</h2>
      {error.status === 403 ? (
        <p>
          The token was accepted, but its user may not read pulls: <span className="mono">{error.reason}</span>. Ask for
          a binding to a ClusterRole with <span className="mono">get</span> on{' '}
          <span className="mono">pulls.pulltrace.io</span>, or use another token.
        </p>
      ) : (
        <p>
          This server shows pulls only to Kubernetes users allowed to <span className="mono">get</span>{' '}
          <span className="mono">pulls.pulltrace.io</span>.{signedIn ? ` The saved token was refused: ${error.reason}.` : ''}
        </p>
      )}
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (token.trim()) signIn(token);
        }}
      >
        <label htmlFor="signin-token">Paste a bearer token</label>
        <textarea
          id="signin-token"
          rows={3}
          spellCheck={false}
          autoComplete="off"
          value={token}
          onChange={(e) => setToken(e.target.value)}
          placeholder="eyJhbGciOi…"
        />
        <div className="signin-actions">
          <button type="submit" disabled={!token.trim()}>
            Sign in
          </button>
          {signedIn && (
            <button type="button" onClick={() => signIn('')}>
              Sign out
            </button>
          )}
        </div>
      </form>
      <p className="muted">
        A token for a service account bound to the reader role:{' '}
        <span className="mono">kubectl create token SERVICEACCOUNT -n NAMESPACE --duration 8h</span>. Or skip the
        browser: <span className="mono">kubectl pulltrace top</span>, or the API server's service proxy (
        <span className="mono">kubectl proxy</span>). The token stays in this browser (a cookie for this page only).
      </p>
    </section>
  );
}
