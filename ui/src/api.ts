// REST calls (relative URLs, so the UI also works behind a path-prefix proxy).
import { AuthError } from './auth';
import type { NodeInfo, Pull } from './types';

async function getJson<T>(url: string, signal?: AbortSignal): Promise<T> {
  const res = await fetch(url, { headers: { Accept: 'application/json' }, cache: 'no-store', signal });
  if (!res.ok) {
    let reason = '';
    try {
      const body = await res.json();
      if (body && typeof body.error === 'string') reason = body.error;
    } catch {
      /* not JSON */
    }
    if (res.status === 401 || res.status === 403) throw new AuthError(res.status, reason || res.statusText);
    throw new Error(reason ? `HTTP ${res.status}: ${reason}` : `HTTP ${res.status}`);
  }
  return (await res.json()) as T;
}

export const api = {
  pulls: (signal?: AbortSignal) => getJson<{ pulls: Pull[] }>('api/v1/pulls', signal).then((r) => r.pulls),
  nodes: (signal?: AbortSignal) => getJson<{ nodes: NodeInfo[] }>('api/v1/nodes', signal).then((r) => r.nodes),
  pull: (id: string, signal?: AbortSignal) =>
    getJson<{ pull: Pull }>(`api/v1/pulls/${encodeURIComponent(id)}`, signal).then((r) => r.pull),
  eventsUrl: 'api/v1/events',
};
