import { formatPercent } from '../format';

/** A progress bar with an accessible name and value; width changes only, never layout. */
export function Bar({ percent, state, label, size = 'md' }: { percent: number | null; state: string; label: string; size?: 'sm' | 'md' | 'lg' }) {
  const p = percent == null ? null : Math.max(0, Math.min(100, percent));
  return (
    <div
      className={`bar bar-${size} st-${state}${p == null ? ' indeterminate' : ''}`}
      role="progressbar"
      aria-label={label}
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={p == null ? undefined : Math.round(p * 10) / 10}
      aria-valuetext={p == null ? 'size unknown' : formatPercent(p)}
    >
      <div className="bar-fill" style={{ transform: `scaleX(${(p ?? 0) / 100})` }} />
    </div>
  );
}

export function StateBadge({ state }: { state: string }) {
  return <span className={`badge st-${state}`}>{state}</span>;
}
