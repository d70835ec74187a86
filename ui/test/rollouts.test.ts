import { describe, expect, it } from 'vitest';
import { nodePullsOf, rolloutRows, rolloutsFromPulls, segments, slowestNodes, summarizeRollout } from '../src/rollouts';
import { pull } from './fixtures';

const IMG = 'reg/app:2';
const mk = (node: string, over = {}) => pull({ id: `${node}/m-1`, node, image: IMG, ...over });

describe('rollouts', () => {
  it('sums one image across nodes like the server does', () => {
    const ps = [
      mk('n1', { state: 'completed', downloadedBytes: 3000, percent: 100, etaSeconds: 0 }),
      mk('n2', { state: 'pulling', downloadedBytes: 1000, bytesPerSecond: 100, etaSeconds: 20 }),
      mk('n3', { state: 'pulling', downloadedBytes: 0, bytesPerSecond: 0, etaSeconds: null }),
      mk('n4', { state: 'stalled', downloadedBytes: 500, bytesPerSecond: 0, etaSeconds: null }),
      mk('n5', { state: 'lost', downloadedBytes: 200 }),
      pull({ id: 'n1/other', node: 'n1', image: 'reg/other:1' }),
    ];
    const r = summarizeRollout(IMG, nodePullsOf(ps, IMG));
    expect(r).toMatchObject({ nodes: 5, done: 1, pulling: 1, waiting: 1, stalled: 1, failed: 1, totalBytes: 15000, downloadedBytes: 4700, bytesPerSecond: 100, etaSeconds: 20 });
    expect(segments(r).map((s) => s.count)).toEqual([1, 1, 1, 1, 1]);
    expect(segments(r).reduce((a, s) => a + s.share, 0)).toBeCloseTo(100);
    expect(rolloutsFromPulls(ps).size).toBe(2);
  });

  it('a retry on a node replaces its failed pull', () => {
    const ps = [mk('n1', { id: 'n1/a', state: 'failed', startedAt: '2026-11-21T10:00:00Z' }), mk('n1', { id: 'n1/b', state: 'pulling', startedAt: '2026-11-21T10:01:00Z' })];
    expect(nodePullsOf(ps, IMG).map((p) => p.id)).toEqual(['n1/b']);
  });

  it('names stalled nodes first, then the longest ETAs', () => {
    const ps = [mk('a', { etaSeconds: 5 }), mk('b', { etaSeconds: 50 }), mk('c', { state: 'stalled', etaSeconds: null }), mk('d', { state: 'completed' }), mk('e', { etaSeconds: null })];
    expect(slowestNodes(ps, 3).map((s) => s.node)).toEqual(['c', 'e', 'b']);
  });

  it('orders rows: in flight (most nodes first), then finished (newest first); filters by image', () => {
    const base = summarizeRollout('x', []);
    const rs = [
      { ...base, image: 'done-old', nodes: 3, done: 3, startedAt: '2026-01-01T00:00:00Z' },
      { ...base, image: 'small', nodes: 2, pulling: 2, totalBytes: 100, downloadedBytes: 50 },
      { ...base, image: 'big', nodes: 9, pulling: 9 },
      { ...base, image: 'done-new', nodes: 3, done: 3, startedAt: '2026-02-01T00:00:00Z' },
    ];
    const rows = rolloutRows(rs, new Map());
    expect(rows.map((r) => r.rollout.image)).toEqual(['big', 'small', 'done-new', 'done-old']);
    expect(rows[1].percent).toBe(50);
    expect(rows[0].percent).toBeNull();
    expect(rolloutRows(rs, new Map(), 'DONE').map((r) => r.rollout.image)).toEqual(['done-new', 'done-old']);
  });

  it('builds 5000 nodes of rows quickly enough to do on every batch', () => {
    const ps = Array.from({ length: 5000 }, (_, i) => mk(`node-${i}`, { id: `node-${i}/m`, etaSeconds: i % 97 }));
    const t0 = performance.now();
    const r = rolloutsFromPulls(ps).get(IMG)!;
    const rows = rolloutRows([r], new Map([[IMG, ps]]));
    const ms = performance.now() - t0;
    expect(r.nodes).toBe(5000);
    expect(rows[0].slowest).toHaveLength(3);
    expect(ms).toBeLessThan(2000); // generous: a single pass, a few ms here
  });
});
