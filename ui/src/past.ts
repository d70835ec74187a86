// A pull's own past, for its details: what its record says happened (start, an earlier kubelet
// failure and its resolution, completion, kubelet's Pulled, the failure), the alerts the
// server's history kept about it, and the events this page saw live — merged in time order.

import type { HistoryAlert } from './api';
import type { HistoryEntry } from './state';
import type { Pull } from './types';
import { formatDuration } from './format';

export function recordEvents(p: Pull): HistoryEntry[] {
  const out: HistoryEntry[] = [];
  const add = (time: string | null | undefined, type: string, text: string) => {
    if (time) out.push({ id: null, time, type, text });
  };
  add(p.startedAt, 'pull.started', 'pull started');
  if (p.resolvedError) {
    add(p.resolvedError.failedAt, 'kubelet', `kubelet: ${p.resolvedError.reason}: ${p.resolvedError.message}`);
    add(p.resolvedError.resolvedAt, 'kubelet', 'kubelet retried and got past the failure');
  }
  if (p.state === 'completed') add(p.completedAt, 'pull.completed', 'pull completed');
  if ((p.state === 'failed' || p.state === 'lost') && p.error) {
    add(p.completedAt ?? p.updatedAt, 'pull.failed', `pull ${p.state === 'lost' ? 'lost' : 'failed'}: ${p.error.reason}`);
  }
  const k = p.kubelet;
  if (k?.pulledAt) {
    const d = k.durationSeconds != null ? ` in ${formatDuration(k.durationSeconds)}` : '';
    const w = k.waitingSeconds != null ? ` (${formatDuration(k.waitingSeconds)} including waiting)` : '';
    add(k.pulledAt, 'kubelet', `kubelet: Successfully pulled${d}${w}`);
  }
  return out;
}

/** The history's alerts that name this pull (by its `pull` label). */
export function alertEvents(pullId: string, alerts: HistoryAlert[]): HistoryEntry[] {
  return alerts
    .filter((a) => a.labels?.pull === pullId)
    .map((a) => ({ id: null, time: a.time, type: 'alert', text: `alert ${a.name}: ${a.summary ?? ''}`.trim() }));
}

/** Every entry once (same time to the second and same text), oldest first. */
export function mergeEvents(...lists: HistoryEntry[][]): HistoryEntry[] {
  const seen = new Set<string>();
  const all: HistoryEntry[] = [];
  for (const l of lists) {
    for (const e of l) {
      const k = `${(e.time ?? '').slice(0, 19)}|${e.text}`;
      if (seen.has(k)) continue;
      seen.add(k);
      all.push(e);
    }
  }
  return all
    .map((e, i) => ({ e, i }))
    .sort((a, b) => (a.e.time ?? '').localeCompare(b.e.time ?? '') || a.i - b.i)
    .map((x) => x.e);
}
