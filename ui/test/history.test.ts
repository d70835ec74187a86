import { describe, expect, it } from 'vitest';
import { buckets, historyQuery, percentileSeries, spanOf } from '../src/history';
import { alertEvents, mergeEvents, recordEvents } from '../src/past';
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
});
