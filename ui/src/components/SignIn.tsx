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
          <span className="mono">pulls.pulltrace.io</span>. {signedIn ? 'The saved token was refused' : 'The server says'}:{' '}
          <span className="mono">{error.reason}</span>.
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
        Use a token made for this, not your own cluster credentials (this server receives the token): for a service
        account bound to the reader role,{' '}
        <span className="mono">kubectl create token SERVICEACCOUNT -n NAMESPACE --audience AUDIENCE --duration 8h</span>{' '}
        (the audience the server names, if it names one). The token
        stays in this browser (a cookie for this page only). In a terminal,{' '}
        <span className="mono">kubectl pulltrace top</span> shows the same pulls where the cluster lets it through
        the API server's service proxy.
      </p>
    </section>
  );
}
