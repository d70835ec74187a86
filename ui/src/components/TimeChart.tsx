// A time-series chart drawn by uPlot (canvas; docs/ui.md says why this library). The chart is
// created once per mount and fed new data with setData, so a live series costs one redraw.

import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export interface Line {
  label: string;
  /** a CSS custom property of styles.css (so light and dark both work), e.g. '--pulling' */
  color: string;
  fill?: boolean;
  /** draw each point (for sparse series, where a point may have no neighbour) */
  points?: boolean;
}

// Tick steps of the time axis, in seconds: whole seconds at least.
const TIME_INCRS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];

function cssVar(name: string): string {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888';
}

export function TimeChart({
  x,
  ys,
  lines,
  height = 160,
  label,
  format,
  testid,
}: {
  /** Unix seconds */
  x: number[];
  ys: (number | null)[][];
  lines: Line[];
  height?: number;
  label: string;
  format: (v: number) => string;
  testid?: string;
}) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const fmt = useRef(format);
  fmt.current = format;
  // Until two samples exist there is no line to draw (and no time axis to speak of).
  const ready = x.length >= 2 || lines.some((l) => l.points);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const axis = { stroke: cssVar('--muted'), grid: { stroke: cssVar('--line'), width: 1 }, ticks: { stroke: cssVar('--line') } };
    const opts: uPlot.Options = {
      width: Math.max(200, el.clientWidth),
      height,
      legend: { show: lines.length > 1 },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [
        { ...axis, incrs: TIME_INCRS },
        { ...axis, size: 76, values: (_u, vals) => vals.map((v) => fmt.current(v)) },
      ],
      series: [
        {},
        ...lines.map((l) => {
          const c = cssVar(l.color);
          return {
            label: l.label,
            stroke: c,
            width: 2,
            fill: l.fill ? c + '33' : undefined,
            points: { show: !!l.points, size: 6, fill: c },
            value: (_u: uPlot, v: number | null) => (v == null ? '—' : fmt.current(v)),
          };
        }),
      ],
    };
    const u = new uPlot(opts, [x, ...ys] as uPlot.AlignedData, el);
    plot.current = u;
    const ro = new ResizeObserver(() => u.setSize({ width: Math.max(200, el.clientWidth), height }));
    ro.observe(el);
    return () => {
      ro.disconnect();
      u.destroy();
      plot.current = null;
    };
    // Created once per set of lines; data changes go through setData below.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [lines.map((l) => l.label + l.color).join('|'), height, ready]);

  useEffect(() => {
    plot.current?.setData([x, ...ys] as uPlot.AlignedData);
  }, [x, ys]);

  if (!ready) {
    return (
      <div className="chart chart-empty muted" role="img" aria-label={label} data-testid={testid} data-points={x.length} style={{ height }}>
        collecting samples…
      </div>
    );
  }
  return <div className="chart" ref={box} role="img" aria-label={label} data-testid={testid} data-points={x.length} />;
}
