import { describe, expect, it } from 'vitest';
import { buckets, historyQuery, percentileSeries, spanOf } from '../src/history';
import { alertEvents, mergeEvents, recordEvents, serverEvents, withLive } from '../src/past';
import { pull } from './fixtures';

describe('history queries', () => {
  it('asks for finished pulls with the filters given', () => {
    const q = new URLSearchParams(historyQuery({ image: ' app ', node: '', namespace: 'shop', since: '2h', until: '' }, 'tok'));
    expect(Object.fromEntries(q)).toEqual({ image: 'app', namespace: 'shop', since: '2h', state: 'completed,failed,lost', limit: '100', continue: 'tok' });
  });
  it('cuts a window into buckets and reads one image per bucket', () => {
    const bs = buckets(Date.parse('2026-11-21T12:00:00Z'), 3600 * 2, 2);
    expect(bs.map((b) => [b.since, b.until])).toEqual([
      ['2026-11-21T10:00:00.000Z', '2026-11-21T11:00:00.000Z'],
      ['2026-11-21T11:00:00.000Z', '2026-11-21T12:00:00.000Z'],
    ]);
    const st = { image: 'a', pulls: 1, completed: 1, failed: 0, failuresByReason: {}, durationSeconds: { p50: 1, p95: 2, max: 3 }, bytesDownloaded: 0, cachedShare: 0 };
    expect(percentileSeries(bs, [[], [st]], 'a')).toEqual({ t: [bs[0].t, bs[1].t], p50: [null, 1], p95: [null, 2], max: [null, 3] });
    expect(spanOf('90m')).toBe(5400);
    expect(spanOf('7d')).toBe(604800);
    expect(spanOf('2026-11-21T10:00Z')).toBe(86400);
  });
});

describe("a pull's past", () => {
  it('comes from its record, the kept alerts and the live events, once each, in time order', () => {
    const p = pull({
      state: 'completed',
      startedAt: '2026-11-21T10:00:00.000Z',
      completedAt: '2026-11-21T10:00:08.000Z',
      resolvedError: { reason: 'ErrImagePull', message: 'boom', failedAt: '2026-11-21T09:59:00.000Z', resolvedAt: '2026-11-21T10:00:09.000Z' },
      kubelet: { pulledAt: '2026-11-21T10:00:10.000Z', durationSeconds: 9, waitingSeconds: 12 },
    });
    const rec = recordEvents(p);
    const alerts = alertEvents(p.id, [
      { name: 'PullSlow', severity: 'warning', summary: 'slow', labels: { pull: p.id }, eventType: 'pull.progress', time: '2026-11-21T10:00:05.000Z' },
      { name: 'Other', severity: 'warning', summary: 'x', labels: { pull: 'someone/else' }, eventType: null, time: '2026-11-21T10:00:05.000Z' },
    ]);
    const live = [{ id: 7, time: '2026-11-21T10:00:08.100Z', type: 'pull.completed', text: 'pull completed' }];
    const all = mergeEvents(rec, alerts, live).map((e) => e.text);
    expect(all).toEqual([
      'kubelet: ErrImagePull: boom',
      'pull started',
      'alert PullSlow: slow',
      'pull completed',
      'kubelet retried and got past the failure',
      'kubelet: Successfully pulled in 9s (12s including waiting)',
    ]);
  });

  it("reads the server's events of the pull, then adds what the page saw live once", () => {
    const t = (s: number) => `2026-11-21T10:00:${String(s).padStart(2, '0')}.000Z`;
    const ev = (id: number, type: string, data: object) => ({ id, type, data: { v: 1, type, time: t(id - 100), ...data } });
    const p0 = pull({ startedAt: t(0) });
    const stalled = { ...p0, state: 'stalled' as const };
    const pods = { ...p0, pods: [{ namespace: 'shop', name: 'api-1' }] };
    const done = { ...pods, state: 'completed' as const, completedAt: t(8) };
    const pulled = { ...done, kubelet: { pulledAt: t(9), durationSeconds: 9, waitingSeconds: 12 } };
    const fromServer = serverEvents([
      ev(100, 'pull.started', { pull: p0 }),
      ev(103, 'pull.stalled', { pull: stalled }),
      ev(104, 'pull.progress', { pull: p0 }),
      ev(105, 'pull.progress', { pull: pods }),
      ev(106, 'alert', { alert: { name: 'PullSlow', severity: 'warning', summary: 'slow', pullId: p0.id } }),
      ev(108, 'pull.completed', { pull: done }),
      ev(109, 'pull.progress', { pull: pulled }),
      ev(110, 'pull.evicted', { pullId: p0.id, node: p0.node }),
      ev(111, 'pull.progress', { pull: pulled }), // nothing new: no line
    ]);
    expect(fromServer.map((e) => e.text)).toEqual([
      'pull started',
      'pull stalled',
      'state stalled → pulling',
      'pods: shop/api-1',
      'alert PullSlow: slow',
      'pull completed',
      'kubelet: Successfully pulled in 9s (12s including waiting)',
      "pull left the server's tables",
    ]);
    expect(fromServer.map((e) => e.id)).toEqual([100, 103, 104, 105, 106, 108, 109, 110]);
    // The page opened at 105: it saw 106 and 108 live (with a layer note of 108), and 112
    // arrived after the server answered.
    const live = [
      { id: 106, time: t(6), type: 'alert', text: 'alert PullSlow: slow' },
      { id: 108, time: t(8), type: 'layer', text: 'layer 333333333333 done' },
      { id: 108, time: t(8), type: 'pull.completed', text: 'pull completed' },
      { id: 112, time: t(12), type: 'alert', text: 'alert PullLate: late' },
    ];
    const all = withLive(fromServer, live);
    expect(all.map((e) => `${e.id} ${e.text}`)).toEqual([
      '100 pull started',
      '103 pull stalled',
      '104 state stalled → pulling',
      '105 pods: shop/api-1',
      '106 alert PullSlow: slow',
      '108 pull completed',
      '108 layer 333333333333 done',
      "109 kubelet: Successfully pulled in 9s (12s including waiting)",
      "110 pull left the server's tables",
      '112 alert PullLate: late',
    ]);
  });
});
