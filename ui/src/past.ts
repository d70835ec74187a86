// A pull's own past, for its details. The server keeps each pull's story (GET
// /api/v1/pulls/{id}/events: state changes, kubelet's Pulled, pods, alerts), so a pull opened
// late shows what happened before the page opened; the events this page saw live since are
// added once each. For a pull the server kept no events of (older servers; without a history,
// a pull from before a restart or whose events were pushed out), its record and the alerts
// the history kept tell what they can.

import type { HistoryAlert } from './api';
import type { HistoryEntry } from './state';
import type { Alert, KubeletPulled, Pull, StreamEvent } from './types';
import { formatDuration } from './format';

function kubeletText(k: KubeletPulled): string {
  const d = k.durationSeconds != null ? ` in ${formatDuration(k.durationSeconds)}` : '';
  const w = k.waitingSeconds != null ? ` (${formatDuration(k.waitingSeconds)} including waiting)` : '';
  return `kubelet: Successfully pulled${d}${w}`;
}

export function alertText(a: Pick<Alert, 'name' | 'summary'>): string {
  return `alert ${a.name}: ${a.summary ?? ''}`.trim();
}

/** What a pull.* event says happened, given the pull before it (null: nothing worth a line). */
export function describePullChange(type: string, prev: Pull | undefined, next: Pull): string | null {
  switch (type) {
    case 'pull.started':
      return 'pull started';
    case 'pull.stalled':
      return 'pull stalled';
    case 'pull.completed':
      return 'pull completed';
    case 'pull.failed':
      return next.error ? `pull ${next.state === 'lost' ? 'lost' : 'failed'}: ${next.error.reason}` : `pull ${next.state}`;
    case 'pull.progress':
      if (!prev) return null;
      if (prev.state !== next.state) return `state ${prev.state} → ${next.state}`;
      if (!prev.kubelet?.pulledAt && next.kubelet?.pulledAt) return kubeletText(next.kubelet);
      if (!prev.resolvedError && next.resolvedError) return `kubelet retried and got past ${next.resolvedError.reason}`;
      if (podsKey(prev) !== podsKey(next) && next.pods.length) {
        return `pods: ${next.pods.map((p) => `${p.namespace}/${p.name}`).join(', ')}`;
      }
      return null;
  }
  return null;
}

function podsKey(p: Pull): string {
  return (p.pods ?? []).map((x) => `${x.namespace}/${x.name}`).join(',');
}

/** The server's events of one pull (oldest first), as lines of its past. */
export function serverEvents(events: StreamEvent[]): HistoryEntry[] {
  const out: HistoryEntry[] = [];
  let prev: Pull | undefined;
  for (const ev of events) {
    const d = ev.data ?? {};
    const time: string | null = typeof d.time === 'string' ? d.time : null;
    let text: string | null = null;
    if (ev.type.startsWith('pull.') && d.pull && typeof d.pull.id === 'string') {
      text = describePullChange(ev.type, prev, d.pull);
      prev = d.pull;
    } else if (ev.type === 'pull.evicted') {
      text = d.reason === 'superseded' ? 'pull superseded by its retry' : "pull left the server's tables";
    } else if (ev.type === 'alert' && d.alert) {
      text = alertText(d.alert);
    }
    if (text) out.push({ id: ev.id, time, type: ev.type, text });
  }
  return out;
}

/**
 * The server's past of a pull followed by what this page saw live that the server's list does
 * not hold: an event is the same when its id is (the stream and the server number them alike);
 * the layer notes the page drew from an event are kept beside it.
 */
export function withLive(past: HistoryEntry[], live: HistoryEntry[]): HistoryEntry[] {
  const ids = new Set(past.map((e) => e.id).filter((id) => id != null));
  const extra = live.filter((e) => e.type === 'layer' || e.id == null || !ids.has(e.id));
  return mergeEvents(past, extra);
}

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
  if (p.kubelet?.pulledAt) add(p.kubelet.pulledAt, 'kubelet', kubeletText(p.kubelet));
  return out;
}

/** The history's alerts that name this pull (by its `pull` label). */
export function alertEvents(pullId: string, alerts: HistoryAlert[]): HistoryEntry[] {
  return alerts.filter((a) => a.labels?.pull === pullId).map((a) => ({ id: null, time: a.time, type: 'alert', text: alertText(a) }));
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
