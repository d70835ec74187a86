// The UI's state: pulls and nodes as the server last described them, plus what the stream
// told us along the way (per-pull history, alerts). A pure reducer so that it is tested
// without a browser (test/state.test.ts).

import { appendSample, SPEED_SAMPLES, type Series } from './series';
import { alertText, describePullChange } from './past';
import type { Alert, Layer, LayerChange, NodeInfo, Pull, Rollout, StreamEvent } from './types';

export interface HistoryEntry {
  id: number | null;
  time: string | null;
  type: string;
  text: string;
}

export interface AlertEntry extends Alert {
  key: number;
  eventId: number | null;
  time: string | null;
}

export interface State {
  pulls: Map<string, Pull>;
  nodes: Map<string, NodeInfo>;
  /** id of the last stream event applied (sent back as Last-Event-ID on reconnect). */
  lastEventId: number | null;
  /** true once a stream snapshot was applied: later REST answers are older than it. */
  streamSynced: boolean;
  history: Map<string, HistoryEntry[]>;
  alerts: AlertEntry[];
  alertSeq: number;
  /** the server's rollout summaries by image (snapshot `rollouts`, `rollout.summary`) */
  rollouts: Map<string, Rollout>;
  /** true when the server sends rollout summaries (a snapshot with `rollouts`) */
  serverRollouts: boolean;
  /** each pull's speed over time, from the events that carried it */
  speeds: Map<string, Series>;
}

export type Action =
  | { type: 'rest-snapshot'; pulls: Pull[]; nodes?: NodeInfo[] }
  | { type: 'rollouts'; rollouts: Rollout[] }
  | { type: 'event'; event: StreamEvent }
  | { type: 'batch'; actions: Action[] }
  | { type: 'pull-detail'; pull: Pull }
  | { type: 'dismiss-alert'; key: number }
  | { type: 'clear-alerts' };

export const MAX_ALERTS = 50;
export const MAX_HISTORY = 50;

export function initialState(): State {
  return {
    pulls: new Map(),
    nodes: new Map(),
    lastEventId: null,
    streamSynced: false,
    history: new Map(),
    alerts: [],
    alertSeq: 0,
    rollouts: new Map(),
    serverRollouts: false,
    speeds: new Map(),
  };
}

/** Applies one action; `batch` applies many with a single copy of the tables. */
export function reducer(state: State, action: Action): State {
  if (action.type === 'batch') {
    if (action.actions.length === 0) return state;
    const d = new Draft(state);
    for (const a of action.actions) d.apply(a);
    return d.finish();
  }
  const d = new Draft(state);
  d.apply(action);
  return d.finish();
}

type TableKey = 'pulls' | 'nodes' | 'history' | 'rollouts' | 'speeds';

/** Copy-on-write view of a State: each table is copied at most once per reducer call. */
class Draft {
  private s: State;
  /** the tables already copied in this call */
  private copied = new Set<TableKey>();
  private changed = false;

  constructor(private readonly base: State) {
    this.s = { ...base };
  }

  finish(): State {
    return this.changed ? this.s : this.base;
  }

  /** A table of the new state, copied from the old one on first use in this call. */
  private table<K extends TableKey>(k: K): State[K] {
    if (!this.copied.has(k)) {
      (this.s[k] as Map<unknown, unknown>) = new Map(this.s[k] as Map<unknown, unknown>);
      this.copied.add(k);
    }
    this.changed = true;
    return this.s[k];
  }

  private pulls = () => this.table('pulls');
  private nodes = () => this.table('nodes');
  private history = () => this.table('history');
  private rollouts = () => this.table('rollouts');
  private speeds = () => this.table('speeds');

  private sample(p: Pull, time: string | null) {
    const at = time ? Date.parse(time) : NaN;
    if (Number.isNaN(at)) return;
    const active = p.state === 'pulling' || p.state === 'stalled';
    const prev = this.s.speeds.get(p.id);
    if (!active && !prev) return;
    const v = active ? p.bytesPerSecond ?? 0 : 0;
    const next = appendSample(prev, at / 1000, v, SPEED_SAMPLES);
    if (next !== prev) this.speeds().set(p.id, next);
  }

  private note(pullId: string, e: HistoryEntry) {
    const h = this.history();
    const prev = h.get(pullId) ?? [];
    const next = prev.length >= MAX_HISTORY ? prev.slice(prev.length - MAX_HISTORY + 1) : prev.slice();
    next.push(e);
    h.set(pullId, next);
  }

  apply(a: Action) {
    switch (a.type) {
      case 'batch':
        for (const x of a.actions) this.apply(x);
        return;
      case 'rest-snapshot':
        // The stream's snapshot is at least as new as any REST answer started before it.
        if (this.s.streamSynced) return;
        this.replacePulls(a.pulls);
        if (a.nodes) this.replaceNodes(a.nodes);
        return;
      case 'rollouts':
        // The summaries read before the stream: its snapshot has them too, and newer.
        if (this.s.streamSynced) return;
        this.s.serverRollouts = true;
        this.rollouts().clear();
        for (const r of a.rollouts) if (r && typeof r.image === 'string') this.s.rollouts.set(r.image, r);
        return;
      case 'pull-detail': {
        const prev = this.s.pulls.get(a.pull.id);
        if (!prev) return; // evicted meanwhile: do not resurrect it
        // The detail answer may be older than the stream's last progress: keep the
        // stream's figures and take only the layers when we have none.
        if (!prev.layers && a.pull.layers) this.pulls().set(prev.id, { ...prev, layers: a.pull.layers });
        return;
      }
      case 'dismiss-alert':
        this.changed = true;
        this.s.alerts = this.s.alerts.filter((x) => x.key !== a.key);
        return;
      case 'clear-alerts':
        this.changed = true;
        this.s.alerts = [];
        return;
      case 'event':
        this.event(a.event);
        return;
    }
  }

  private replacePulls(list: Pull[]) {
    const pulls = this.pulls();
    const old = this.s.pulls.size ? new Map(pulls) : pulls;
    pulls.clear();
    for (const p of list) {
      const prev = old.get(p.id);
      pulls.set(p.id, !p.layers && prev?.layers ? { ...p, layers: prev.layers } : p);
    }
    // History of pulls that are gone is of no use any more.
    if (this.s.history.size) {
      const h = this.history();
      for (const id of [...h.keys()]) if (!pulls.has(id)) h.delete(id);
    }
    if (this.s.speeds.size) {
      const sp = this.speeds();
      for (const id of [...sp.keys()]) if (!pulls.has(id)) sp.delete(id);
    }
  }

  private replaceNodes(list: NodeInfo[]) {
    const nodes = this.nodes();
    nodes.clear();
    for (const n of list) nodes.set(n.name, n);
  }

  private event(ev: StreamEvent) {
    const last = this.s.lastEventId;
    if (ev.type !== 'snapshot' && ev.id != null && last != null && ev.id <= last) {
      return; // already applied (a resume may repeat the tail of what we saw)
    }
    // A snapshot restarts the sequence (a new server process counts from its own start).
    if (ev.id != null || ev.type === 'snapshot') {
      this.s.lastEventId = ev.id;
      this.changed = true;
    }
    const d = ev.data ?? {};
    const time: string | null = typeof d.time === 'string' ? d.time : null;
    switch (ev.type) {
      case 'snapshot':
        this.replacePulls(Array.isArray(d.pulls) ? d.pulls : []);
        if (Array.isArray(d.nodes)) this.replaceNodes(d.nodes);
        // Only servers that sum rollouts up send `rollouts` (docs/api.md).
        this.s.serverRollouts = Array.isArray(d.rollouts);
        this.rollouts().clear();
        if (Array.isArray(d.rollouts)) for (const r of d.rollouts as Rollout[]) if (r && typeof r.image === 'string') this.s.rollouts.set(r.image, r);
        this.s.streamSynced = true;
        this.changed = true;
        return;
      case 'pull.started':
      case 'pull.progress':
      case 'pull.stalled':
      case 'pull.completed':
      case 'pull.failed': {
        const p: Pull | undefined = d.pull;
        if (!p || typeof p.id !== 'string') return;
        const prev = this.s.pulls.get(p.id);
        // The layers come whole (a new pull, a transition), or only those that moved
        // (layerChanges), or not at all: the ones we have are kept.
        const layers = p.layers ?? withLayerChanges(prev?.layers, d.layerChanges);
        const next: Pull = layers ? { ...p, layers } : p;
        this.pulls().set(p.id, next);
        if (layers && prev?.layers && layers !== prev.layers) {
          for (const text of describeLayerChanges(prev.layers, layers)) this.note(p.id, { id: ev.id, time, type: 'layer', text });
        }
        this.sample(next, time);
        const text = describePullChange(ev.type, prev, next);
        if (text) this.note(p.id, { id: ev.id, time, type: ev.type, text });
        return;
      }
      case 'pull.evicted': {
        const id: string | undefined = d.pullId;
        if (!id) return;
        if (this.s.pulls.has(id)) this.pulls().delete(id);
        if (this.s.history.has(id)) this.history().delete(id);
        if (this.s.speeds.has(id)) this.speeds().delete(id);
        return;
      }
      case 'rollout.summary': {
        const r: Rollout | undefined = d.rollout;
        if (!r || typeof r.image !== 'string') return;
        this.s.serverRollouts = true;
        this.rollouts().set(r.image, r);
        return;
      }
      case 'node.updated': {
        const n: NodeInfo | undefined = d.node;
        if (!n || typeof n.name !== 'string') return;
        this.nodes().set(n.name, n);
        return;
      }
      case 'node.removed': {
        const name: string | undefined = d.node;
        if (typeof name === 'string' && this.s.nodes.has(name)) this.nodes().delete(name);
        return;
      }
      case 'alert': {
        const a: Alert | undefined = d.alert;
        if (!a) return;
        const key = this.s.alertSeq + 1;
        this.s.alertSeq = key;
        this.s.alerts = [{ ...a, key, eventId: ev.id, time }, ...this.s.alerts].slice(0, MAX_ALERTS);
        this.changed = true;
        if (a.pullId && this.s.pulls.has(a.pullId)) {
          this.note(a.pullId, { id: ev.id, time, type: 'alert', text: alertText(a) });
        }
        return;
      }
      default:
        return; // newer server, unknown event: ignore
    }
  }
}

function shortId(d: string): string {
  const i = d.indexOf(':');
  return (i >= 0 ? d.slice(i + 1) : d).slice(0, 12);
}

/** The layers with the changes of an event's `layerChanges` applied (by index); `layers`
 *  itself when there are none, undefined when there are no layers to change. */
function withLayerChanges(layers: Layer[] | undefined, changes: unknown): Layer[] | undefined {
  if (!layers || !Array.isArray(changes) || changes.length === 0) return layers;
  const out = layers.slice();
  for (const c of changes as LayerChange[]) {
    if (!c || !Number.isInteger(c.index) || c.index < 0 || c.index >= out.length) continue;
    const { index, ...members } = c;
    out[index] = { ...out[index], ...members };
  }
  return out;
}

/** Notes for the layers that started, finished or stalled between two views of a pull. */
function describeLayerChanges(before: Layer[], after: Layer[]): string[] {
  const old = new Map(before.map((l) => [l.digest, l.state]));
  const out: string[] = [];
  for (const l of after) {
    const was = old.get(l.digest) ?? 'waiting';
    if (was === l.state) continue;
    if (l.state === 'done') out.push(`layer ${shortId(l.digest)} done`);
    else if (l.state === 'stalled') out.push(`layer ${shortId(l.digest)} stalled`);
    else if (was === 'waiting' && l.state === 'downloading') out.push(`layer ${shortId(l.digest)} started`);
  }
  return out;
}
