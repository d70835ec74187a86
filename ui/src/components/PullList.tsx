import { memo, useCallback, useState } from 'react';
import { DASH, formatBytes, formatDuration, formatPercent, formatRate, splitImage } from '../format';
import type { Series } from '../series';
import type { Pull } from '../types';
import type { Row } from '../view';
import { Bar, StateBadge } from './bits';
import { Sparkline } from './Sparkline';
import { VirtualList } from './VirtualList';

/** Below this list width rows switch to a stacked (phone) layout. */
export const COMPACT_BELOW = 860;
const ROW_H = 52;
const ROW_H_COMPACT = 84;
const GROUP_H = 36;

export function timing(p: Pull): { label: string; value: string } {
  if (p.state === 'completed') return { label: 'took', value: formatDuration(p.durationSeconds) };
  if (p.state === 'failed' || p.state === 'lost') return { label: 'after', value: formatDuration(p.durationSeconds) };
  if (p.state === 'stalled') return { label: 'ETA', value: p.etaSeconds == null ? 'stalled' : formatDuration(p.etaSeconds) };
  return { label: 'ETA', value: formatDuration(p.etaSeconds) };
}

export function podsLabel(p: Pull): string {
  const pods = p.pods ?? [];
  if (!pods.length) return DASH;
  const first = `${pods[0].namespace}/${pods[0].name}`;
  return pods.length > 1 ? `${first} +${pods.length - 1}` : first;
}

export function ImageName({ image }: { image: string | null }) {
  const { repo, tag, digest } = splitImage(image);
  return (
    <span className="image" title={image ?? 'image not known yet'}>
      <span className="repo">{repo}</span>
      {tag && <span className="tag">{digest ? `@${tag.slice(0, 19)}` : `:${tag}`}</span>}
    </span>
  );
}

const PullRowView = memo(function PullRowView({
  pull: p,
  speed,
  selected,
  compact,
  onOpen,
}: {
  pull: Pull;
  speed: Series | undefined;
  selected: boolean;
  compact: boolean;
  onOpen: (id: string) => void;
}) {
  const t = timing(p);
  const bytes = p.totalKnown ? `${formatBytes(p.downloadedBytes)} / ${formatBytes(p.totalBytes)}` : `${formatBytes(p.downloadedBytes)} / ?`;
  const name = `${p.image ?? 'unknown image'} on ${p.node}, ${p.state}, ${formatPercent(p.percent)}`;
  return (
    <button
      type="button"
      className={`pull-row${compact ? ' compact' : ''}${selected ? ' selected' : ''} st-${p.state}`}
      data-pull-id={p.id}
      data-state={p.state}
      aria-label={`Show details of ${name}`}
      aria-pressed={selected}
      onClick={() => onOpen(p.id)}
    >
      <span className="c-image">
        <ImageName image={p.image} />
        {p.error && <span className="row-error" title={p.error.message}>{p.error.reason}</span>}
      </span>
      <span className="c-node" title={p.node}>{p.node}</span>
      <span className="c-pods" title={(p.pods ?? []).map((x) => `${x.namespace}/${x.name}`).join('\n')}>{podsLabel(p)}</span>
      <span className="c-bar">
        <Bar percent={p.percent} state={p.state} label={`Progress of ${p.image ?? 'unknown image'} on ${p.node}`} />
      </span>
      <span className="c-pct num">{formatPercent(p.percent)}</span>
      <span className="c-bytes num">{bytes}</span>
      <span className="c-speed num">{p.state === 'pulling' || p.state === 'stalled' ? formatRate(p.bytesPerSecond) : DASH}</span>
      <span className="c-spark">
        <Sparkline series={speed} label={`Speed of ${p.image ?? 'unknown image'} on ${p.node} over time`} />
      </span>
      <span className="c-eta num" title={t.label}>
        {compact && <span className="k">{t.label} </span>}
        {t.value}
      </span>
      <span className="c-state">
        <StateBadge state={p.state} />
      </span>
    </button>
  );
});

export function PullList({
  rows,
  selectedId,
  onOpen,
  empty,
  speeds,
}: {
  rows: Row[];
  selectedId: string | null;
  onOpen: (id: string) => void;
  empty: boolean;
  /** each pull's speed over time (sparklines) */
  speeds: Map<string, Series>;
}) {
  const [compact, setCompact] = useState(false);
  const onWidth = useCallback((w: number) => setCompact(w > 0 && w < COMPACT_BELOW), []);
  const heightOf = useCallback((r: Row) => (r.kind === 'group' ? GROUP_H : compact ? ROW_H_COMPACT : ROW_H), [compact]);
  const keyOf = useCallback((r: Row) => r.key, []);
  const render = useCallback(
    (r: Row) =>
      r.kind === 'group' ? (
        <div className="group-row" role="heading" aria-level={2}>
          <span className="group-label" title={r.label}>{r.label}</span>
          <span className="group-meta num">
            {r.count} {r.count === 1 ? 'pull' : 'pulls'}
            {r.active > 0 && ` · ${r.active} active · ${formatRate(r.bytesPerSecond)}`}
          </span>
        </div>
      ) : (
        <PullRowView pull={r.pull} speed={speeds.get(r.pull.id)} selected={r.pull.id === selectedId} compact={compact} onOpen={onOpen} />
      ),
    [compact, selectedId, onOpen, speeds],
  );
  return (
    <section className={`list${compact ? ' compact' : ''}`} aria-label="Pulls">
      {!compact && (
        <div className="list-head" aria-hidden="true">
          <span className="c-image">Image</span>
          <span className="c-node">Node</span>
          <span className="c-pods">Pods</span>
          <span className="c-bar">Progress</span>
          <span className="c-pct">%</span>
          <span className="c-bytes">Downloaded</span>
          <span className="c-speed">Speed</span>
          <span className="c-spark">Speed over time</span>
          <span className="c-eta">ETA / took</span>
          <span className="c-state">State</span>
        </div>
      )}
      {rows.length === 0 && (
        <p className="empty">{empty ? 'No pulls yet. Pulls appear here as soon as an agent reports them.' : 'No pull matches the filters.'}</p>
      )}
      <VirtualList items={rows} heightOf={heightOf} keyOf={keyOf} render={render} label="Pull list" onWidth={onWidth} />
    </section>
  );
}
