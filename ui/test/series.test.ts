import { describe, expect, it } from 'vitest';
import { appendSample, sparkPoints } from '../src/series';

describe('series', () => {
  it('appends, replaces within a second, ignores older samples and keeps the newest max', () => {
    let s = appendSample(undefined, 100, 1, 3);
    s = appendSample(s, 100.5, 2, 3);
    expect(s).toEqual({ t: [100.5], v: [2] });
    s = appendSample(s, 101, 3, 3);
    s = appendSample(s, 102, 4, 3);
    s = appendSample(s, 103, 5, 3);
    expect(s).toEqual({ t: [101, 102, 103], v: [3, 4, 5] });
    expect(appendSample(s, 50, 9, 3)).toBe(s);
  });
  it('draws a sparkline scaled to its box', () => {
    expect(sparkPoints({ t: [0], v: [1] }, 80, 22)).toBe('');
    expect(sparkPoints({ t: [0, 10], v: [0, 4] }, 80, 22)).toBe('0.0,22.0 80.0,1.0');
  });
});
