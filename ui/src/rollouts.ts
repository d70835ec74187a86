// Rollouts: the pulls of one image (repository and tag) across the nodes. The server sums them
// up (`rollout.summary` events and the snapshot's `rollouts`, docs/api.md); a server that sends
// no summaries gets the same sums computed here from its pulls, so the view works with both.

import type { Pull, Rollout } from './types';

const active = (p: Pull) => p.state === 'pulling' || p.state === 'stalled';

/** The newest pull of each node for `image` (a retry replaces the pull that failed). */
export function nodePullsOf(pulls: Iterable<Pull>, image: string): Pull[] {
  const byNode = new Map<string, Pull>();
  for (const p of pulls) {
    if (p.image !== image) continue;
    const prev = byNode.get(p.node);
    if (!prev || (p.startedAt ?? '') > (prev.startedAt ?? '')) byNode.set(p.node, p);
  }
  return [...byNode.values()];
}

/** The same sums as the server's `rollout.summary`, from pulls (for servers without summaries). */
export function summarizeRollout(image: string, nodePulls: Pull[]): Rollout {
  const r: Rollout = {
    image,
    nodes: nodePulls.length,
    done: 0,
    pulling: 0,
    stalled: 0,
    failed: 0,
    waiting: 0,
    totalBytes: 0,
    downloadedBytes: 0,
    bytesPerSecond: 0,
    etaSeconds: null,
    startedAt: null,
    updatedAt: null,
  };
  for (const p of nodePulls) {
    if (p.state === 'completed') r.done++;
    else if (p.state === 'stalled') r.stalled++;
    else if (p.state === 'failed' || p.state === 'lost') r.failed++;
    else if (p.downloadedBytes > 0) r.pulling++;
    else r.waiting++;
    if (p.totalKnown) r.totalBytes += p.totalBytes;
    r.downloadedBytes += p.downloadedBytes;
    if (active(p)) {
      r.bytesPerSecond += p.bytesPerSecond ?? 0;
      if (p.etaSeconds != null) r.etaSeconds = Math.max(r.etaSeconds ?? 0, p.etaSeconds);
    }
    if (p.startedAt && (!r.startedAt || p.startedAt < r.startedAt)) r.startedAt = p.startedAt;
    if (p.updatedAt && (!r.updatedAt || p.updatedAt > r.updatedAt)) r.updatedAt = p.updatedAt;
  }
  return r;
}

/** Groups pulls by image; pulls whose image is not known yet belong to no rollout. */
export function pullsByImage(pulls: Iterable<Pull>): Map<string, Pull[]> {
  const out = new Map<string, Pull[]>();
  for (const p of pulls) {
    if (!p.image) continue;
    let l = out.get(p.image);
    if (!l) out.set(p.image, (l = []));
    l.push(p);
  }
  return out;
}

export function rolloutsFromPulls(pulls: Iterable<Pull>): Map<string, Rollout> {
  const out = new Map<string, Rollout>();
  for (const [image, list] of pullsByImage(pulls)) out.set(image, summarizeRollout(image, nodePullsOf(list, image)));
  return out;
}

export interface SlowNode {
  node: string;
  pullId: string;
  etaSeconds: number | null;
  percent: number | null;
  stalled: boolean;
}

export interface RolloutRow {
  rollout: Rollout;
  /** the nodes that hold the rollout back: stalled first, then the longest ETAs */
  slowest: SlowNode[];
  /** share of the rollout's bytes downloaded, 0–100, or null when no total is known */
  percent: number | null;
}

export function rolloutActive(r: Rollout): boolean {
  return r.pulling + r.stalled + r.waiting > 0;
}

/** Up to `n` nodes of `list` (one image's pulls) that hold its rollout back. */
export function slowestNodes(list: Pull[], n = 3): SlowNode[] {
  const inFlight = list.filter(active);
  inFlight.sort((a, b) => {
    if (a.state !== b.state) return a.state === 'stalled' ? -1 : 1;
    const ea = a.etaSeconds ?? Infinity;
    const eb = b.etaSeconds ?? Infinity;
    if (ea !== eb) return eb - ea;
    return (a.percent ?? 0) - (b.percent ?? 0);
  });
  return inFlight.slice(0, n).map((p) => ({
    node: p.node,
    pullId: p.id,
    etaSeconds: p.etaSeconds,
    percent: p.percent,
    stalled: p.state === 'stalled',
  }));
}

/**
 * One row per rollout, in flight first (most nodes first), then finished ones (newest first).
 * `byImage` (pulls grouped by image) names the slowest nodes; the sums come from `rollouts`.
 */
export function rolloutRows(rollouts: Iterable<Rollout>, byImage: Map<string, Pull[]>, filter = ''): RolloutRow[] {
  const f = filter.trim().toLowerCase();
  const rows: RolloutRow[] = [];
  for (const r of rollouts) {
    if (f && !r.image.toLowerCase().includes(f)) continue;
    rows.push({
      rollout: r,
      slowest: rolloutActive(r) ? slowestNodes(byImage.get(r.image) ?? []) : [],
      percent: r.totalBytes > 0 ? Math.min(100, (100 * r.downloadedBytes) / r.totalBytes) : null,
    });
  }
  rows.sort((a, b) => {
    const aa = rolloutActive(a.rollout);
    const ba = rolloutActive(b.rollout);
    if (aa !== ba) return aa ? -1 : 1;
    if (aa && a.rollout.nodes !== b.rollout.nodes) return b.rollout.nodes - a.rollout.nodes;
    const t = (b.rollout.startedAt ?? '').localeCompare(a.rollout.startedAt ?? '');
    return t || a.rollout.image.localeCompare(b.rollout.image);
  });
  return rows;
}

export type Segment = 'done' | 'pulling' | 'stalled' | 'failed' | 'waiting';
export const SEGMENTS: Segment[] = ['done', 'pulling', 'stalled', 'failed', 'waiting'];

/** The stacked bar's segments as shares of the nodes (0–100 each, summing to 100). */
export function segments(r: Rollout): { kind: Segment; count: number; share: number }[] {
  const total = r.nodes || 1;
  return SEGMENTS.map((kind) => ({ kind, count: r[kind], share: (100 * r[kind]) / total }));
}
