// REST calls (relative URLs, so the UI also works behind a path-prefix proxy).
import type { ImageStats } from './history';
import { refusal } from './auth';
import { readFirstEvent } from './stream';
import type { NodeInfo, Pull, Rollout, StreamEvent } from './types';

export interface HistoryAlert {
  name: string;
  severity: string;
  summary: string;
  labels: Record<string, string>;
  eventType: string | null;
  time: string;
}


async function getJson<T>(url: string, signal?: AbortSignal): Promise<T> {
  const res = await fetch(url, { headers: { Accept: 'application/json' }, cache: 'no-store', signal });
  if (!res.ok) throw await refusal(res);
  return (await res.json()) as T;
}

export const api = {
  pulls: (signal?: AbortSignal) => getJson<{ pulls: Pull[] }>('api/v1/pulls', signal).then((r) => r.pulls),
  nodes: (signal?: AbortSignal) => getJson<{ nodes: NodeInfo[] }>('api/v1/nodes', signal).then((r) => r.nodes),
  pull: (id: string, signal?: AbortSignal) =>
    getJson<{ pull: Pull }>(`api/v1/pulls/${encodeURIComponent(id)}`, signal).then((r) => r.pull),
  /** the pull's own past, oldest first, as the event stream sent it (without layers) */
  pullEvents: (id: string, signal?: AbortSignal) =>
    getJson<{ events: StreamEvent[] }>(`api/v1/pulls/${encodeURIComponent(id)}/events`, signal).then((r) => r.events),
  eventsUrl: 'api/v1/events',
  /** the server's rollout summaries: the snapshot of a summaries-only subscription */
  rollouts: (signal?: AbortSignal) =>
    readFirstEvent('api/v1/events?types=rollout.summary', signal).then((e) =>
      Array.isArray(e.data?.rollouts) ? (e.data.rollouts as Rollout[]) : [],
    ),
  /** query: see history.ts (historyQuery) */
  history: (query: string, signal?: AbortSignal) =>
    getJson<{ pulls: Pull[]; metadata?: { continue?: string } }>(`api/v1/history?${query}`, signal).then((r) => ({
      pulls: r.pulls,
      continue: r.metadata?.continue ?? null,
    })),
  stats: (query: string, signal?: AbortSignal) =>
    getJson<{ images: ImageStats[] }>(`api/v1/history/stats?${query}`, signal).then((r) => r.images),
  /** the alerts the history kept about one node and image, newest first */
  alerts: (query: string, signal?: AbortSignal) =>
    getJson<{ alerts: HistoryAlert[] }>(`api/v1/history/alerts?${query}`, signal).then((r) => r.alerts),
};
