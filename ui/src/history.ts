// The History view's queries: finished pulls from /api/v1/history and per-image duration
// percentiles over time from /api/v1/history/stats, asked once per time bucket.

import type { Pull } from './types';

export interface HistoryFilters {
  image: string;
  node: string;
  namespace: string;
  since: string;
  until: string;
}

export interface HistoryPage {
  pulls: Pull[];
  continue: string | null;
}

export interface ImageStats {
  image: string;
  pulls: number;
  completed: number;
  failed: number;
  failuresByReason: Record<string, number>;
  durationSeconds: { p50: number | null; p95: number | null; max: number | null };
  bytesDownloaded: number;
  cachedShare: number | null;
}

/** Query string for /api/v1/history (empty filters left out; `node` is an exact name there). */
export function historyQuery(f: HistoryFilters, cont: string | null, limit = 100): string {
  const q = new URLSearchParams();
  if (f.image.trim()) q.set('image', f.image.trim());
  if (f.node.trim()) q.set('node', f.node.trim());
  if (f.namespace.trim()) q.set('namespace', f.namespace.trim());
  if (f.since.trim()) q.set('since', f.since.trim());
  if (f.until.trim()) q.set('until', f.until.trim());
  q.set('state', 'completed,failed,lost');
  q.set('limit', String(limit));
  if (cont) q.set('continue', cont);
  return q.toString();
}

export interface Bucket {
  since: string;
  until: string;
  /** the bucket's middle, Unix seconds (where its point is drawn) */
  t: number;
}

/** `n` consecutive windows of `spanSeconds` in all, the last one ending at `endMs`. */
export function buckets(endMs: number, spanSeconds: number, n: number): Bucket[] {
  const step = (spanSeconds * 1000) / n;
  const out: Bucket[] = [];
  for (let i = 0; i < n; i++) {
    const a = endMs - spanSeconds * 1000 + i * step;
    const b = a + step;
    out.push({ since: new Date(a).toISOString(), until: new Date(b).toISOString(), t: (a + b) / 2000 });
  }
  return out;
}

/** How far back the percentile chart looks for a `since` such as "24h", "90m" or "7d" (default 24 h). */
export function spanOf(since: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|m|h|d)$/.exec(since.trim());
  if (!m) return 86400;
  const mult = { s: 1, m: 60, h: 3600, d: 86400 }[m[2] as 's' | 'm' | 'h' | 'd'];
  return Math.max(60, Number(m[1]) * mult);
}

export interface PercentileSeries {
  t: number[];
  p50: (number | null)[];
  p95: (number | null)[];
  max: (number | null)[];
}

/** One image's percentiles per bucket (null where the bucket has no completed pull of it). */
export function percentileSeries(bs: Bucket[], answers: ImageStats[][], image: string): PercentileSeries {
  const s: PercentileSeries = { t: [], p50: [], p95: [], max: [] };
  bs.forEach((b, i) => {
    const st = (answers[i] ?? []).find((x) => x.image === image);
    s.t.push(b.t);
    s.p50.push(st?.durationSeconds.p50 ?? null);
    s.p95.push(st?.durationSeconds.p95 ?? null);
    s.max.push(st?.durationSeconds.max ?? null);
  });
  return s;
}
