// What the list shows: URL parameters, filtering, ordering, grouping and the header's totals.

import type { ContainerdStatus, NodeInfo, Pull, PullState } from './types';

export type GroupBy = 'none' | 'node' | 'image';
/** The page's views: the live pull list, rollouts (pulls by image across nodes), history. */
export type Tab = 'pulls' | 'rollouts' | 'history';
export const TABS: Tab[] = ['pulls', 'rollouts', 'history'];

export interface Filters {
  image: string;
  node: string;
  namespace: string;
  pod: string;
}

export interface ViewParams extends Filters {
  group: GroupBy;
  /** id of the pull whose details are open */
  pull: string | null;
  tab: Tab;
  /** image of the rollout that is open (Rollouts view) */
  rollout: string | null;
  /** the history's time window: RFC 3339 times or durations ago ("24h"), as the API takes them */
  since: string;
  until: string;
}

export const emptyParams: ViewParams = {
  image: '',
  node: '',
  namespace: '',
  pod: '',
  group: 'none',
  pull: null,
  tab: 'pulls',
  rollout: null,
  since: '',
  until: '',
};

// URL query names (short and stable: these links get shared).
const KEYS: [keyof Filters, string][] = [
  ['image', 'image'],
  ['node', 'node'],
  ['namespace', 'ns'],
  ['pod', 'pod'],
];

export function parseParams(search: string): ViewParams {
  const q = new URLSearchParams(search);
  const p: ViewParams = { ...emptyParams };
  for (const [k, name] of KEYS) p[k] = q.get(name) ?? '';
  const g = q.get('group');
  p.group = g === 'node' || g === 'image' ? g : 'none';
  p.pull = q.get('pull') || null;
  const v = q.get('view');
  p.tab = TABS.includes(v as Tab) ? (v as Tab) : 'pulls';
  p.rollout = q.get('rollout') || null;
  p.since = q.get('since') ?? '';
  p.until = q.get('until') ?? '';
  return p;
}

/** "?image=app&group=node" (empty values left out), or "" for the default view. */
export function serializeParams(p: ViewParams): string {
  const q = new URLSearchParams();
  for (const [k, name] of KEYS) if (p[k].trim()) q.set(name, p[k]);
  if (p.group !== 'none') q.set('group', p.group);
  if (p.pull) q.set('pull', p.pull);
  if (p.tab !== 'pulls') q.set('view', p.tab);
  if (p.rollout) q.set('rollout', p.rollout);
  if (p.since.trim()) q.set('since', p.since);
  if (p.until.trim()) q.set('until', p.until);
  const s = q.toString();
  return s ? `?${s}` : '';
}

function has(hay: string | null | undefined, needle: string): boolean {
  return (hay ?? '').toLowerCase().includes(needle);
}

/** Case-insensitive substring match on every non-empty filter (AND). */
export function matches(p: Pull, f: Filters): boolean {
  const image = f.image.trim().toLowerCase();
  const node = f.node.trim().toLowerCase();
  const ns = f.namespace.trim().toLowerCase();
  const pod = f.pod.trim().toLowerCase();
  if (image && !has(p.image, image)) return false;
  if (node && !has(p.node, node)) return false;
  if (ns && !(p.pods ?? []).some((x) => has(x.namespace, ns))) return false;
  if (pod && !(p.pods ?? []).some((x) => has(x.name, pod))) return false;
  return true;
}

/** Active first, then the ones needing attention (stalled, failed, lost), then completed. */
export function stateRank(s: PullState): number {
  switch (s) {
    case 'pulling':
      return 0;
    case 'stalled':
      return 1;
    case 'failed':
    case 'lost':
      return 2;
    case 'completed':
      return 3;
  }
  return 4;
}

function ts(iso: string | null): number {
  if (!iso) return 0;
  const t = Date.parse(iso);
  return Number.isNaN(t) ? 0 : t;
}

/** Order within a rank: newest start first (stable: id breaks ties). */
export function comparePulls(a: Pull, b: Pull): number {
  const r = stateRank(a.state) - stateRank(b.state);
  if (r) return r;
  const t = ts(b.startedAt) - ts(a.startedAt);
  if (t) return t;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

export function visiblePulls(pulls: Iterable<Pull>, f: Filters): Pull[] {
  const out: Pull[] = [];
  for (const p of pulls) if (matches(p, f)) out.push(p);
  out.sort(comparePulls);
  return out;
}

export interface GroupRow {
  kind: 'group';
  key: string;
  label: string;
  count: number;
  active: number;
  bytesPerSecond: number;
}
export interface PullRow {
  kind: 'pull';
  key: string;
  pull: Pull;
}
export type Row = GroupRow | PullRow;

export function groupKey(p: Pull, by: GroupBy): string {
  return by === 'node' ? p.node : by === 'image' ? p.image ?? 'unknown image' : '';
}

const isActive = (p: Pull) => p.state === 'pulling' || p.state === 'stalled';

/** Flattens sorted pulls into rows; groups are ordered by their most urgent pull, then name. */
export function buildRows(sorted: Pull[], by: GroupBy): Row[] {
  if (by === 'none') return sorted.map((p) => ({ kind: 'pull', key: p.id, pull: p }));
  const groups = new Map<string, { rows: PullRow[]; head: GroupRow; rank: number }>();
  for (const p of sorted) {
    const k = groupKey(p, by);
    let g = groups.get(k);
    if (!g) {
      g = {
        rows: [],
        head: { kind: 'group', key: `group:${k}`, label: k, count: 0, active: 0, bytesPerSecond: 0 },
        rank: stateRank(p.state),
      };
      groups.set(k, g);
    }
    g.rows.push({ kind: 'pull', key: p.id, pull: p });
    g.head.count++;
    if (isActive(p)) {
      g.head.active++;
      g.head.bytesPerSecond += p.bytesPerSecond ?? 0;
    }
  }
  const ordered = [...groups.values()].sort((a, b) => a.rank - b.rank || (a.head.label < b.head.label ? -1 : 1));
  const rows: Row[] = [];
  for (const g of ordered) rows.push(g.head, ...g.rows);
  return rows;
}

export interface Summary {
  active: number;
  stalled: number;
  failed: number;
  completed: number;
  bytesPerSecond: number;
  nodesReporting: number;
  nodesTotal: number;
  nodesContainerdDown: number;
}

/** The node's containerd status when its agent cannot reach containerd, else null (also for
 * an unknown node, or a server that does not say). */
export function containerdDown(node: NodeInfo | null | undefined): ContainerdStatus | null {
  return node?.containerd && node.containerd.reachable === false ? node.containerd : null;
}

/** Cluster-wide totals for the header (over every pull, not only the filtered ones). */
export function summarize(pulls: Iterable<Pull>, nodes: Iterable<NodeInfo>): Summary {
  const s: Summary = {
    active: 0,
    stalled: 0,
    failed: 0,
    completed: 0,
    bytesPerSecond: 0,
    nodesReporting: 0,
    nodesTotal: 0,
    nodesContainerdDown: 0,
  };
  for (const p of pulls) {
    if (p.state === 'pulling') s.active++;
    else if (p.state === 'stalled') s.stalled++;
    else if (p.state === 'failed' || p.state === 'lost') s.failed++;
    else if (p.state === 'completed') s.completed++;
    if (isActive(p)) s.bytesPerSecond += p.bytesPerSecond ?? 0;
  }
  for (const n of nodes) {
    s.nodesTotal++;
    if (n.state === 'ok') s.nodesReporting++;
    if (containerdDown(n)) s.nodesContainerdDown++;
  }
  return s;
}
