import { describe, expect, it } from 'vitest';
import { buildRows, comparePulls, containerdDown, matches, parseParams, serializeParams, summarize, visiblePulls, emptyParams } from '../src/view';
import { pull } from './fixtures';

const pods = [{ namespace: 'shop', name: 'web-7d9f' }];

describe('ordering', () => {
  it('active first, then stalled and failed, then completed; newest first within', () => {
    const list = [
      pull({ id: 'a', state: 'completed', startedAt: '2026-11-21T10:00:09Z' }),
      pull({ id: 'b', state: 'failed', startedAt: '2026-11-21T10:00:01Z' }),
      pull({ id: 'c', state: 'pulling', startedAt: '2026-11-21T10:00:01Z' }),
      pull({ id: 'd', state: 'stalled', startedAt: '2026-11-21T10:00:02Z' }),
      pull({ id: 'e', state: 'pulling', startedAt: '2026-11-21T10:00:05Z' }),
      pull({ id: 'f', state: 'lost', startedAt: '2026-11-21T10:00:03Z' }),
    ];
    expect([...list].sort(comparePulls).map((p) => p.id)).toEqual(['e', 'c', 'd', 'f', 'b', 'a']);
  });
});

describe('filters', () => {
  const p = pull({ image: '127.0.0.1:5001/demo/App:1.0', node: 'worker-3', pods });
  it('match case-insensitive substrings, all of them', () => {
    expect(matches(p, { image: 'demo/app', node: '', namespace: '', pod: '' })).toBe(true);
    expect(matches(p, { image: 'demo/app', node: 'worker-3', namespace: 'sho', pod: 'web' })).toBe(true);
    expect(matches(p, { image: 'demo/app', node: 'worker-4', namespace: '', pod: '' })).toBe(false);
    expect(matches(p, { image: '', node: '', namespace: 'kube-system', pod: '' })).toBe(false);
    expect(matches(p, { image: '', node: '', namespace: '', pod: 'db' })).toBe(false);
  });
  it('a namespace or pod filter excludes pulls without pods', () => {
    expect(matches(pull(), { image: '', node: '', namespace: 'shop', pod: '' })).toBe(false);
  });
  it('visiblePulls filters and sorts', () => {
    const out = visiblePulls([pull({ id: 'x', node: 'n1' }), pull({ id: 'y', node: 'n2' })], { image: '', node: 'n2', namespace: '', pod: '' });
    expect(out.map((x) => x.id)).toEqual(['y']);
  });
});

describe('URL parameters', () => {
  it('round-trip and leave defaults out', () => {
    const q = serializeParams({ ...emptyParams, image: 'demo app', namespace: 'shop', group: 'node', pull: 'node-a/x-1' });
    expect(q).toBe('?image=demo+app&ns=shop&group=node&pull=node-a%2Fx-1');
    expect(parseParams(q)).toEqual({ ...emptyParams, image: 'demo app', namespace: 'shop', group: 'node', pull: 'node-a/x-1' });
    expect(serializeParams(emptyParams)).toBe('');
    expect(parseParams('?group=bogus').group).toBe('none');
    const r = { ...emptyParams, tab: 'rollouts' as const, rollout: 'reg/app:2', since: '2h', until: '' };
    expect(serializeParams(r)).toBe('?view=rollouts&rollout=reg%2Fapp%3A2&since=2h');
    expect(parseParams(serializeParams(r))).toEqual(r);
    expect(parseParams('?view=bogus').tab).toBe('pulls');
  });
});

describe('grouping', () => {
  it('groups by node, most urgent group first, with counts and throughput', () => {
    const sorted = visiblePulls(
      [
        pull({ id: 'n1/a', node: 'n1', state: 'completed' }),
        pull({ id: 'n2/b', node: 'n2', state: 'pulling', bytesPerSecond: 100 }),
        pull({ id: 'n2/c', node: 'n2', state: 'stalled', bytesPerSecond: 0 }),
        pull({ id: 'n1/d', node: 'n1', state: 'failed' }),
      ],
      emptyParams,
    );
    const rows = buildRows(sorted, 'node');
    expect(rows.map((r) => (r.kind === 'group' ? `[${r.label} ${r.count}/${r.active}/${r.bytesPerSecond}]` : r.pull.id))).toEqual([
      '[n2 2/2/100]',
      'n2/b',
      'n2/c',
      '[n1 2/0/0]',
      'n1/d',
      'n1/a',
    ]);
  });
  it('groups by image, unknown images together', () => {
    const rows = buildRows(visiblePulls([pull({ id: '1', image: null }), pull({ id: '2', image: 'x:1' }), pull({ id: '3', image: null })], emptyParams), 'image');
    expect(rows.filter((r) => r.kind === 'group').map((r) => (r.kind === 'group' ? `${r.label}:${r.count}` : ''))).toEqual(['unknown image:2', 'x:1:1']);
  });
  it('no grouping gives one row per pull', () => {
    expect(buildRows([pull()], 'none')).toHaveLength(1);
  });
});

describe('summary', () => {
  it('counts states, sums active throughput and reporting nodes', () => {
    const s = summarize(
      [
        pull({ id: '1', state: 'pulling', bytesPerSecond: 1000 }),
        pull({ id: '2', state: 'stalled', bytesPerSecond: 0 }),
        pull({ id: '3', state: 'failed', bytesPerSecond: 50 }),
        pull({ id: '4', state: 'lost' }),
        pull({ id: '5', state: 'completed', bytesPerSecond: 999 }),
      ],
      [
        { name: 'a', state: 'ok' } as never,
        { name: 'b', state: 'lagging' } as never,
      ],
    );
    expect(s).toEqual({
      active: 1,
      stalled: 1,
      failed: 2,
      completed: 1,
      bytesPerSecond: 1000,
      nodesReporting: 1,
      nodesTotal: 2,
      nodesContainerdDown: 0,
    });
  });

  it('counts the nodes whose agent cannot reach containerd, whatever their state', () => {
    const down = { reachable: false, since: '2026-11-21T10:00:01Z', error: 'gRPC code 14: connection refused' };
    const nodes = [
      { name: 'a', state: 'ok', containerd: down } as never,
      { name: 'b', state: 'ok', containerd: { reachable: true, since: null, error: null } } as never,
      { name: 'c', state: 'ok' } as never, // a server before the member
      { name: 'd', state: 'lagging', containerd: down } as never,
    ];
    const s = summarize([], nodes);
    expect(s.nodesContainerdDown).toBe(2);
    expect(s.nodesReporting).toBe(3);
    expect(containerdDown(nodes[0])).toEqual(down);
    expect(containerdDown(nodes[1])).toBeNull();
    expect(containerdDown(nodes[2])).toBeNull();
    expect(containerdDown(null)).toBeNull();
  });
});
