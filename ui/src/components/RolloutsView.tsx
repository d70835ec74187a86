// The Rollouts view: one row per image with its nodes by state as a stacked bar, and, for the
// open rollout, every node's pull with its own bar (the pull list, restricted to that image).

import { memo, useMemo } from 'react';
import { DASH, formatBytes, formatDuration, formatRate } from '../format';
import { nodePullsOf, rolloutActive, segments, type RolloutRow } from '../rollouts';
import type { Series } from '../series';
import type { Pull, Rollout } from '../types';
import { buildRows } from '../view';
import { comparePulls } from '../view';
import { ImageName, PullList } from './PullList';
import { TimeChart } from './TimeChart';

const THROUGHPUT_LINES = [{ label: 'throughput', color: '--pulling', fill: true }];

export function StackedBar({ rollout: r, size = 'md' }: { rollout: Rollout; size?: 'md' | 'lg' }) {
  const segs = segments(r);
  const text = segs
    .filter((s) => s.count > 0)
    .map((s) => `${s.count} ${s.kind}`)
    .join(', ');
  return (
    <div className={`stack stack-${size}`} role="img" aria-label={`${r.nodes} nodes: ${text || 'none'}`} data-testid="rollout-bar">
      {segs.map((s) =>
        s.count > 0 ? <span key={s.kind} className={`seg seg-${s.kind}`} style={{ width: `${s.share}%` }} data-count={s.count} /> : null,
      )}
    </div>
  );
}

export function RolloutCounts({ rollout: r }: { rollout: Rollout }) {
  return (
    <span className="counts num">
      {segments(r).map((s) => (
        <span key={s.kind} className={`cnt cnt-${s.kind}${s.count ? '' : ' zero'}`} data-testid={`count-${s.kind}`} title={s.kind}>
          <i aria-hidden="true" />
          {s.count} {s.kind}
        </span>
      ))}
    </span>
  );
}

const RolloutLine = memo(function RolloutLine({
  row,
  onOpen,
  onOpenPull,
}: {
  row: RolloutRow;
  onOpen: (image: string) => void;
  onOpenPull: (id: string) => void;
}) {
  const r = row.rollout;
  const active = rolloutActive(r);
  return (
    <div className={`rollout-row${active ? ' active' : ''}`} data-image={r.image} data-testid="rollout-row">
      <button type="button" className="rollout-open" onClick={() => onOpen(r.image)} aria-label={`Open the rollout of ${r.image}`}>
        <span className="r-image">
          <ImageName image={r.image} />
        </span>
        <span className="r-bar">
          <StackedBar rollout={r} />
          <RolloutCounts rollout={r} />
        </span>
        <span className="r-nodes num" title="nodes done of all">
          {r.done}/{r.nodes}
        </span>
        <span className="r-bytes num">
          {formatBytes(r.downloadedBytes)} / {r.totalBytes ? formatBytes(r.totalBytes) : '?'}
        </span>
        <span className="r-speed num">{active ? formatRate(r.bytesPerSecond) : DASH}</span>
        <span className="r-eta num" title="when the last node should be done">
          {active ? formatDuration(r.etaSeconds) : r.failed ? `${r.failed} failed` : 'done'}
        </span>
      </button>
      <span className="r-slow">
        {row.slowest.length === 0 ? (
          <span className="muted">{DASH}</span>
        ) : (
          row.slowest.map((s) => (
            <button
              key={s.pullId}
              type="button"
              className={`slow${s.stalled ? ' st-stalled' : ''}`}
              onClick={() => onOpenPull(s.pullId)}
              title={`${s.node}: ${s.stalled ? 'stalled' : `ETA ${formatDuration(s.etaSeconds)}`}`}
            >
              {s.node} <span className="num muted">{s.stalled ? 'stalled' : formatDuration(s.etaSeconds)}</span>
            </button>
          ))
        )}
      </span>
    </div>
  );
});

export function RolloutsView({
  rows,
  throughput,
  pulls,
  openImage,
  rollout,
  selectedId,
  speeds,
  onOpen,
  onClose,
  onOpenPull,
}: {
  rows: RolloutRow[];
  throughput: Series;
  pulls: Map<string, Pull>;
  openImage: string | null;
  rollout: Rollout | null;
  selectedId: string | null;
  speeds: Map<string, Series>;
  onOpen: (image: string) => void;
  onClose: () => void;
  onOpenPull: (id: string) => void;
}) {
  const ys = useMemo(() => [throughput.v], [throughput]);
  const nodeRows = useMemo(() => {
    if (!openImage) return [];
    return buildRows(nodePullsOf(pulls.values(), openImage).sort(comparePulls), 'none');
  }, [pulls, openImage]);

  return (
    <section className="rollouts" aria-label="Rollouts">
      <div className="panel chart-panel">
        <h2 className="panel-title">
          Cluster throughput <span className="muted">last {Math.round((throughput.t.length || 1) / 60) || 1} min</span>
        </h2>
        <TimeChart x={throughput.t} ys={ys} lines={THROUGHPUT_LINES} height={140} label="Cluster throughput over time" format={(v) => formatRate(v)} testid="throughput-chart" />
      </div>
      {openImage ? (
        <div className="rollout-open-view" data-testid="rollout-detail" data-image={openImage}>
          <div className="rollout-head">
            <button type="button" className="link" onClick={onClose} aria-label="Back to all rollouts">
              ← all rollouts
            </button>
            <h2>
              <ImageName image={openImage} />
            </h2>
            {rollout ? (
              <>
                <StackedBar rollout={rollout} size="lg" />
                <div className="rollout-figures num">
                  <RolloutCounts rollout={rollout} />
                  <span>
                    {formatBytes(rollout.downloadedBytes)} / {rollout.totalBytes ? formatBytes(rollout.totalBytes) : '?'}
                  </span>
                  <span>{formatRate(rollout.bytesPerSecond)}</span>
                  <span>last node {rolloutActive(rollout) ? `in ${formatDuration(rollout.etaSeconds)}` : rollout.failed ? `failed on ${rollout.failed}` : 'done'}</span>
                </div>
              </>
            ) : (
              <p className="muted">No pull of this image is in the server's tables.</p>
            )}
          </div>
          <PullList rows={nodeRows} selectedId={selectedId} onOpen={onOpenPull} empty={nodeRows.length === 0} speeds={speeds} />
        </div>
      ) : (
        <div className="rollout-list" role="list" aria-label="Rollouts by image">
          <div className="rollout-row list-head" aria-hidden="true">
            <span className="r-image">Image</span>
            <span className="r-bar">Nodes by state</span>
            <span className="r-nodes">Done</span>
            <span className="r-bytes">Downloaded</span>
            <span className="r-speed">Speed</span>
            <span className="r-eta">Last node</span>
            <span className="r-slow">Slowest nodes</span>
          </div>
          {rows.length === 0 && <p className="empty">No rollouts yet: they appear as soon as an image is pulled on a node.</p>}
          {rows.map((row) => (
            <RolloutLine key={row.rollout.image} row={row} onOpen={onOpen} onOpenPull={onOpenPull} />
          ))}
        </div>
      )}
    </section>
  );
}
