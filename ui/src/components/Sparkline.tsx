import { memo } from 'react';
import { sparkPoints, type Series } from '../series';

/** A speed sparkline for a list row: a plain SVG line, cheap enough for every visible row. */
export const Sparkline = memo(function Sparkline({ series, label }: { series: Series | undefined; label: string }) {
  const pts = sparkPoints(series, 80, 22);
  return (
    <svg className="spark" viewBox="0 0 80 22" width="80" height="22" role="img" aria-label={label} preserveAspectRatio="none">
      {pts && <polyline points={pts} fill="none" stroke="currentColor" strokeWidth="1.5" vectorEffect="non-scaling-stroke" />}
    </svg>
  );
});
