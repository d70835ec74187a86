import { describe, expect, it } from 'vitest';
import { findRow } from '../src/components/VirtualList';

describe('findRow', () => {
  // rows of 36, 52, 52, 52 px: offsets 0, 36, 88, 140, 192 (total)
  const offsets = [0, 36, 88, 140, 192];
  it('finds the row under a y position', () => {
    expect(findRow(offsets, 0)).toBe(0);
    expect(findRow(offsets, 35.9)).toBe(0);
    expect(findRow(offsets, 36)).toBe(1);
    expect(findRow(offsets, 100)).toBe(2);
    expect(findRow(offsets, 191)).toBe(3);
  });
  it('clamps past the end to the total offset', () => {
    expect(findRow(offsets, 10_000)).toBe(4);
  });
  it('handles an empty list', () => {
    expect(findRow([0], 50)).toBe(0);
  });
  it('scales to many rows', () => {
    const o = [0];
    for (let i = 0; i < 100_000; i++) o.push(o[i] + 52);
    expect(findRow(o, 52 * 76_543 + 10)).toBe(76_543);
  });
});
