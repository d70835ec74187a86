// Where a pull's time went: waiting in kubelet's queue, downloading, unpacking.
//
// - waiting: kubelet's "Successfully pulled image … in X (Y including waiting)" gives Y − X;
// - downloading: the agent's own measure, from the first byte of the pull to its last layer;
// - unpacking: from the agent's completion (every layer in the content store) to kubelet's
//   `Pulled` event, which comes once containerd has unpacked the layers into a snapshot.
// Each is null when the data for it is missing (no kubelet event yet, a pull in flight).

import type { Layer, Pull } from './types';

export interface Phases {
  waitingSeconds: number | null;
  downloadingSeconds: number | null;
  unpackingSeconds: number | null;
}

function t(iso: string | null | undefined): number | null {
  if (!iso) return null;
  const v = Date.parse(iso);
  return Number.isNaN(v) ? null : v;
}

export function phasesOf(p: Pull): Phases {
  const k = p.kubelet ?? null;
  let waiting: number | null = null;
  if (k && k.waitingSeconds != null && k.durationSeconds != null) waiting = Math.max(0, k.waitingSeconds - k.durationSeconds);
  let downloading: number | null = null;
  if (p.source === 'agent' && p.state === 'completed' && p.durationSeconds != null) downloading = p.durationSeconds;
  let unpacking: number | null = null;
  const done = t(p.completedAt);
  const pulled = t(k?.pulledAt);
  if (p.source === 'agent' && done != null && pulled != null) unpacking = Math.max(0, (pulled - done) / 1000);
  return { waitingSeconds: waiting, downloadingSeconds: downloading, unpackingSeconds: unpacking };
}

export interface TimelineBar {
  digest: string;
  state: Layer['state'];
  /** offsets from the pull's start, in seconds; null for a cached layer (it was not downloaded) */
  start: number | null;
  end: number | null;
  totalBytes: number;
}

/**
 * Each layer's download on a common time axis starting at the pull's start: from the layer's
 * `startedAt` to its `updatedAt` (its last change: the end for a finished layer, the latest
 * progress for one in flight). `span` is the axis length in seconds.
 */
export function layerTimeline(p: Pull, nowMs: number): { bars: TimelineBar[]; span: number } {
  const origin = t(p.startedAt);
  const bars: TimelineBar[] = [];
  let span = 0;
  for (const l of p.layers ?? []) {
    const s = t(l.startedAt);
    let e = t(l.updatedAt);
    if (l.state === 'downloading') e = Math.max(e ?? nowMs, nowMs);
    if (l.state === 'cached' || l.state === 'waiting' || origin == null || s == null) {
      bars.push({ digest: l.digest, state: l.state, start: null, end: null, totalBytes: l.totalBytes });
      continue;
    }
    const start = Math.max(0, (s - origin) / 1000);
    const end = Math.max(start, ((e ?? s) - origin) / 1000);
    span = Math.max(span, end);
    bars.push({ digest: l.digest, state: l.state, start, end, totalBytes: l.totalBytes });
  }
  if (origin != null && p.completedAt) span = Math.max(span, ((t(p.completedAt) ?? origin) - origin) / 1000);
  return { bars, span: span || 1 };
}
