import { describe, expect, it } from 'vitest';
import { initialState, MAX_ALERTS, reducer, type Action, type State } from '../src/state';
import type { StreamEvent } from '../src/types';
import { layer, pull } from './fixtures';

const ev = (id: number | null, type: string, data: Record<string, unknown> = {}): Action => ({
  type: 'event',
  event: { id, type, data: { v: 1, type, time: '2026-11-21T10:00:06.000Z', ...data } } as StreamEvent,
});
const run = (actions: Action[], s: State = initialState()) => actions.reduce(reducer, s);

const L1 = layer({ digest: 'sha256:' + '1'.repeat(64), state: 'cached', downloadedBytes: 1000, percent: 100 });
const L2 = layer({ digest: 'sha256:' + '2'.repeat(64), state: 'downloading', downloadedBytes: 0, percent: 0 });
const L3 = layer({ digest: 'sha256:' + '3'.repeat(64) });

describe('snapshot and events', () => {
  it('applies a stream snapshot then started/progress/completed', () => {
    const p = pull({ layers: [L1, L2, L3] });
    let s = run([ev(10, 'snapshot', { pulls: [], nodes: [{ name: 'node-a', state: 'ok' }] }), ev(11, 'pull.started', { pull: p })]);
    expect(s.lastEventId).toBe(11);
    expect(s.streamSynced).toBe(true);
    expect(s.nodes.get('node-a')?.state).toBe('ok');
    expect(s.pulls.get(p.id)?.layers).toHaveLength(3);

    // pull.progress comes without layers: the ones we have are kept.
    const { layers: _drop, ...noLayers } = pull({ downloadedBytes: 2000, percent: 66.67 });
    s = reducer(s, ev(12, 'pull.progress', { pull: noLayers }));
    expect(s.pulls.get(p.id)?.downloadedBytes).toBe(2000);
    expect(s.pulls.get(p.id)?.layers).toHaveLength(3);

    // A layer that moved comes alone in its pull's pull.progress (layerChanges, by index).
    const change = (index: number, l: typeof L2) => {
      const { digest: _d, mediaType: _m, ...members } = l;
      return { index, ...members };
    };
    s = reducer(s, ev(13, 'pull.progress', { pull: noLayers, layerChanges: [change(1, { ...L2, downloadedBytes: 600, percent: 60 })] }));
    expect(s.pulls.get(p.id)?.layers?.[1]).toEqual({ ...L2, downloadedBytes: 600, percent: 60 });
    expect(s.pulls.get(p.id)?.layers?.[0]).toEqual(L1);
    // Changes that name no layer we have are ignored.
    s = reducer(s, ev(14, 'pull.progress', { pull: noLayers, layerChanges: [change(1, { ...L2, state: 'done', downloadedBytes: 1000, percent: 100 }), { ...change(0, L1), index: 7 }, null] }));
    expect(s.pulls.get(p.id)?.layers?.map((l) => l.state)).toEqual(['cached', 'done', L3.state]);
    expect(s.pulls.get(p.id)?.layers?.[1].digest).toBe(L2.digest);

    s = reducer(s, ev(15, 'pull.completed', { pull: pull({ state: 'completed', downloadedBytes: 3000, percent: 100, etaSeconds: 0, layers: [L1, { ...L2, state: 'done' }, { ...L3, state: 'done' }] }) }));
    expect(s.pulls.get(p.id)?.state).toBe('completed');
    const hist = s.history.get(p.id)!.map((h) => h.text);
    expect(hist).toEqual(['pull started', `layer ${'2'.repeat(12)} done`, `layer ${'3'.repeat(12)} done`, 'pull completed']);
  });

  it('notes layers that start or stall from the layers of a pull event', () => {
    let s = run([ev(1, 'snapshot', { pulls: [pull({ layers: [L1, { ...L2, state: 'waiting' }] })] })]);
    s = reducer(s, ev(2, 'pull.progress', { pull: pull({ layers: [L1, L2, L3] }) }));
    expect(s.pulls.get(pull().id)?.layers?.map((l) => l.digest)).toEqual([L1.digest, L2.digest, L3.digest]);
    const { layers: _drop, ...stalled } = pull({ state: 'stalled' });
    s = reducer(s, ev(3, 'pull.stalled', { pull: stalled, layerChanges: [{ index: 1, state: 'stalled' }] }));
    const hist = s.history.get(pull().id)!.map((h) => h.text);
    expect(hist).toEqual([`layer ${'2'.repeat(12)} started`, `layer ${'2'.repeat(12)} stalled`, 'pull stalled']);
  });

  it('a failed pull keeps the kubelet message', () => {
    const failed = pull({ state: 'failed', error: { reason: 'ErrImagePull', message: 'failed to pull and unpack image "x": not found' } });
    const s = run([ev(1, 'snapshot', { pulls: [pull()] }), ev(2, 'pull.failed', { pull: failed })]);
    expect(s.pulls.get(failed.id)?.error?.message).toContain('not found');
    expect(s.history.get(failed.id)?.at(-1)?.text).toBe('pull failed: ErrImagePull');
  });

  it('records a state change carried by pull.progress', () => {
    const s = run([ev(1, 'snapshot', { pulls: [pull({ state: 'stalled' })] }), ev(2, 'pull.progress', { pull: pull({ state: 'pulling' }) })]);
    expect(s.history.get(pull().id)?.[0].text).toBe('state stalled → pulling');
  });

  it('evicts pulls and their history', () => {
    const s = run([ev(1, 'snapshot', { pulls: [] }), ev(2, 'pull.started', { pull: pull() }), ev(3, 'pull.evicted', { pullId: pull().id, node: 'node-a' })]);
    expect(s.pulls.size).toBe(0);
    expect(s.history.size).toBe(0);
  });

  it('forgets a node the server removed', () => {
    const s = run([
      ev(1, 'snapshot', { pulls: [], nodes: [{ name: 'node-a', state: 'lost' }, { name: 'node-b', state: 'ok' }] }),
      ev(2, 'node.removed', { node: 'node-a' }),
    ]);
    expect([...s.nodes.keys()]).toEqual(['node-b']);
  });

  it('keeps the newest alerts first and bounded', () => {
    const actions: Action[] = [];
    for (let i = 1; i <= MAX_ALERTS + 5; i++) actions.push(ev(i, 'alert', { alert: { name: `A${i}`, severity: 'warning', summary: 's' } }));
    const s = run(actions);
    expect(s.alerts).toHaveLength(MAX_ALERTS);
    expect(s.alerts[0].name).toBe(`A${MAX_ALERTS + 5}`);
    const s2 = reducer(s, { type: 'dismiss-alert', key: s.alerts[0].key });
    expect(s2.alerts[0].name).toBe(`A${MAX_ALERTS + 4}`);
  });

  it('ignores unknown event types but still advances the id', () => {
    const s0 = run([ev(1, 'snapshot', { pulls: [pull()] })]);
    const s = reducer(s0, ev(2, 'something.new', { x: 1 }));
    expect(s.lastEventId).toBe(2);
    expect(s.pulls).toBe(s0.pulls);
  });
});

describe('resume', () => {
  it('skips events already applied when a resume repeats them', () => {
    let s = run([ev(10, 'snapshot', { pulls: [pull({ downloadedBytes: 1000 })] }), ev(11, 'pull.progress', { pull: pull({ downloadedBytes: 2000 }) })]);
    // A replay of 11 carrying older figures must not move the pull backwards.
    s = reducer(s, ev(11, 'pull.progress', { pull: pull({ downloadedBytes: 1500 }) }));
    s = reducer(s, ev(9, 'pull.progress', { pull: pull({ downloadedBytes: 500 }) }));
    expect(s.pulls.get(pull().id)?.downloadedBytes).toBe(2000);
    s = reducer(s, ev(12, 'pull.progress', { pull: pull({ downloadedBytes: 2500 }) }));
    expect(s.pulls.get(pull().id)?.downloadedBytes).toBe(2500);
    expect(s.lastEventId).toBe(12);
  });

  it('a fresh snapshot from a restarted server replaces everything, even with a lower id', () => {
    let s = run([ev(500, 'snapshot', { pulls: [pull(), pull({ id: 'node-a/old' })] })]);
    s = reducer(s, ev(3, 'snapshot', { pulls: [pull({ downloadedBytes: 2900 })] }));
    expect([...s.pulls.keys()]).toEqual([pull().id]);
    expect(s.pulls.get(pull().id)?.downloadedBytes).toBe(2900);
    expect(s.lastEventId).toBe(3);
    s = reducer(s, ev(4, 'pull.progress', { pull: pull({ downloadedBytes: 3000 }) }));
    expect(s.pulls.get(pull().id)?.downloadedBytes).toBe(3000);
  });

  it('keeps known layers across a snapshot whose pulls lack them', () => {
    let s = run([ev(1, 'snapshot', { pulls: [pull({ layers: [L1, L2] })] })]);
    const { layers: _l, ...bare } = pull();
    s = reducer(s, ev(7, 'snapshot', { pulls: [bare] }));
    expect(s.pulls.get(pull().id)?.layers).toHaveLength(2);
  });

  it('a REST snapshot arriving after the stream snapshot is ignored', () => {
    let s = run([ev(5, 'snapshot', { pulls: [pull({ downloadedBytes: 2500 })] })]);
    s = reducer(s, { type: 'rest-snapshot', pulls: [pull({ downloadedBytes: 100 })] });
    expect(s.pulls.get(pull().id)?.downloadedBytes).toBe(2500);
    // ...but before it, it paints the page.
    const r = reducer(initialState(), { type: 'rest-snapshot', pulls: [pull()], nodes: [] });
    expect(r.pulls.size).toBe(1);
    expect(r.lastEventId).toBeNull();
  });

  it('pull-detail fills missing layers only and never resurrects an evicted pull', () => {
    const { layers: _l, ...bare } = pull();
    let s = run([ev(1, 'snapshot', { pulls: [bare] })]);
    s = reducer(s, { type: 'pull-detail', pull: pull({ downloadedBytes: 1, layers: [L1] }) });
    expect(s.pulls.get(pull().id)?.layers).toHaveLength(1);
    expect(s.pulls.get(pull().id)?.downloadedBytes).toBe(1000);
    const s2 = reducer(s, { type: 'pull-detail', pull: pull({ id: 'node-z/gone', layers: [L1] }) });
    expect(s2).toBe(s);
  });
});

describe('batch', () => {
  it('applies many events as one update in order', () => {
    const actions: Action[] = [ev(1, 'snapshot', { pulls: [] })];
    for (let i = 0; i < 2000; i++) actions.push(ev(2 + i, 'pull.started', { pull: pull({ id: `node-${i % 7}/p${i}`, node: `node-${i % 7}` }) }));
    actions.push(ev(3000, 'pull.evicted', { pullId: 'node-0/p0' }));
    const s = reducer(initialState(), { type: 'batch', actions });
    expect(s.pulls.size).toBe(1999);
    expect(s.lastEventId).toBe(3000);
  });
  it('an empty batch changes nothing', () => {
    const s = initialState();
    expect(reducer(s, { type: 'batch', actions: [] })).toBe(s);
  });
});

describe('rollouts and speeds', () => {
  it('keeps the server rollout summaries from the snapshot and rollout.summary events', () => {
    const r = { image: 'reg/app:2', nodes: 2, done: 1, pulling: 1, stalled: 0, failed: 0, waiting: 0, totalBytes: 10, downloadedBytes: 5, bytesPerSecond: 1, etaSeconds: 5, startedAt: null, updatedAt: null };
    let s = run([ev(1, 'snapshot', { pulls: [] })]);
    expect(s.serverRollouts).toBe(false);
    s = run([ev(2, 'snapshot', { pulls: [], rollouts: [r] })], s);
    expect(s.serverRollouts).toBe(true);
    expect(s.rollouts.get(r.image)?.done).toBe(1);
    s = reducer(s, ev(3, 'rollout.summary', { rollout: { ...r, done: 2, pulling: 0 } }));
    expect(s.rollouts.get(r.image)?.done).toBe(2);
  });
  it('paints from the summaries read before the stream, which the stream snapshot then replaces', () => {
    const r = { image: 'reg/app:2', nodes: 5000, done: 10, pulling: 4990, stalled: 0, failed: 0, waiting: 0, totalBytes: 10, downloadedBytes: 5, bytesPerSecond: 1, etaSeconds: 5, startedAt: null, updatedAt: null };
    let s = reducer(initialState(), { type: 'rollouts', rollouts: [r] });
    expect(s.serverRollouts).toBe(true);
    expect(s.rollouts.get(r.image)?.nodes).toBe(5000);
    expect(s.pulls.size).toBe(0);
    s = run([ev(2, 'snapshot', { pulls: [pull()], rollouts: [{ ...r, done: 11 }] })], s);
    expect(s.rollouts.get(r.image)?.done).toBe(11);
    // Summaries answered after the stream's snapshot are older than it.
    expect(reducer(s, { type: 'rollouts', rollouts: [] })).toBe(s);
  });
  it("samples each pull's speed from its events and forgets evicted pulls", () => {
    const at = (id: number, sec: number, bps: number, state = 'pulling') => ({
      type: 'event' as const,
      event: { id, type: 'pull.progress', data: { time: `2026-11-21T10:00:${String(sec).padStart(2, '0')}.000Z`, pull: pull({ bytesPerSecond: bps, state: state as 'pulling' }) } },
    });
    let s = run([ev(1, 'snapshot', { pulls: [pull()] }), at(2, 1, 100), at(3, 2, 300), at(4, 3, 0, 'completed')]);
    expect(s.speeds.get(pull().id)?.v).toEqual([100, 300, 0]);
    s = reducer(s, ev(5, 'pull.evicted', { pullId: pull().id }));
    expect(s.speeds.has(pull().id)).toBe(false);
  });
});
