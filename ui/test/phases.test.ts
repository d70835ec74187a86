import { describe, expect, it } from 'vitest';
import { layerTimeline, phasesOf } from '../src/phases';
import { layer, pull } from './fixtures';

describe('phases', () => {
  it('splits a completed pull into waiting, downloading and unpacking', () => {
    const p = pull({
      state: 'completed',
      startedAt: '2026-11-21T10:00:00.000Z',
      completedAt: '2026-11-21T10:00:08.000Z',
      durationSeconds: 8,
      kubelet: { pulledAt: '2026-11-21T10:00:11.000Z', durationSeconds: 10.5, waitingSeconds: 14 },
    });
    expect(phasesOf(p)).toEqual({ waitingSeconds: 3.5, downloadingSeconds: 8, unpackingSeconds: 3 });
  });
  it('leaves unknown phases null (in flight, no kubelet event, kubelet-only pull)', () => {
    expect(phasesOf(pull())).toEqual({ waitingSeconds: null, downloadingSeconds: null, unpackingSeconds: null });
    const k = pull({ source: 'kubelet', state: 'completed', completedAt: '2026-11-21T10:00:08.000Z', kubelet: { pulledAt: '2026-11-21T10:00:09.000Z', durationSeconds: 2, waitingSeconds: null } });
    expect(phasesOf(k)).toEqual({ waitingSeconds: null, downloadingSeconds: null, unpackingSeconds: null });
  });
  it('puts each layer on the pull time axis and marks cached ones', () => {
    const p = pull({
      startedAt: '2026-11-21T10:00:00.000Z',
      layers: [
        layer({ digest: 'sha256:c', state: 'cached' }),
        layer({ digest: 'sha256:d', state: 'done', startedAt: '2026-11-21T10:00:01.000Z', updatedAt: '2026-11-21T10:00:04.000Z' }),
        layer({ digest: 'sha256:l', state: 'downloading', startedAt: '2026-11-21T10:00:02.000Z', updatedAt: '2026-11-21T10:00:05.000Z' }),
      ],
    });
    const { bars, span } = layerTimeline(p, Date.parse('2026-11-21T10:00:06.000Z'));
    expect(bars[0]).toMatchObject({ state: 'cached', start: null });
    expect(bars[1]).toMatchObject({ start: 1, end: 4 });
    expect(bars[2]).toMatchObject({ start: 2, end: 6 }); // in flight: up to now
    expect(span).toBe(6);
  });
});
