// A small windowing list: only the rows inside the viewport (plus an overscan margin) are
// in the DOM, so thousands of pulls cost as much as a screenful. Rows have known heights
// (given by heightOf), so offsets are a prefix sum and the first visible row a binary search.

import { useEffect, useLayoutEffect, useMemo, useRef, useState, type ReactNode } from 'react';

export interface VirtualListProps<T> {
  items: T[];
  heightOf: (item: T) => number;
  keyOf: (item: T) => string;
  render: (item: T, index: number) => ReactNode;
  label: string;
  overscan?: number;
  /** Called with the list's inner width when it changes (rows adapt their layout). */
  onWidth?: (w: number) => void;
  className?: string;
}

/** Index of the last offset <= y (offsets ascending, offsets[0] = 0). */
export function findRow(offsets: number[], y: number): number {
  let lo = 0;
  let hi = offsets.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (offsets[mid] <= y) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

export function VirtualList<T>({ items, heightOf, keyOf, render, label, overscan = 400, onWidth, className }: VirtualListProps<T>) {
  const ref = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [viewport, setViewport] = useState(800);

  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    const measure = () => {
      setViewport(el.clientHeight);
      onWidth?.(el.clientWidth);
    };
    measure();
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, [onWidth]);

  const offsets = useMemo(() => {
    const o = new Array<number>(items.length + 1);
    o[0] = 0;
    for (let i = 0; i < items.length; i++) o[i + 1] = o[i] + heightOf(items[i]);
    return o;
  }, [items, heightOf]);
  const total = offsets[items.length];

  // When the list shrinks under the scroll position, follow it.
  useEffect(() => {
    const el = ref.current;
    if (el && el.scrollTop > Math.max(0, total - el.clientHeight)) setScrollTop(el.scrollTop);
  }, [total]);

  const first = items.length ? findRow(offsets, Math.max(0, scrollTop - overscan)) : 0;
  const last = items.length ? Math.min(items.length - 1, findRow(offsets, scrollTop + viewport + overscan)) : -1;
  const children: ReactNode[] = [];
  for (let i = first; i <= last; i++) {
    const it = items[i];
    children.push(
      <div
        key={keyOf(it)}
        role="listitem"
        className="vrow"
        style={{ transform: `translateY(${offsets[i]}px)`, height: offsets[i + 1] - offsets[i] }}
      >
        {render(it, i)}
      </div>,
    );
  }
  return (
    <div
      ref={ref}
      className={`vlist${className ? ` ${className}` : ''}`}
      onScroll={(e) => setScrollTop(e.currentTarget.scrollTop)}
      role="list"
      aria-label={label}
      tabIndex={-1}
    >
      <div className="vlist-inner" style={{ height: total }}>
        {children}
      </div>
    </div>
  );
}
