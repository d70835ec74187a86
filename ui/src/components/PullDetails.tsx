import { useEffect, useRef, type ReactNode } from 'react';
import { DASH, formatBytes, formatDuration, formatPercent, formatRate, formatTime, mediaTypeLabel, shortDigest } from '../format';
import type { HistoryEntry } from '../state';
import type { Layer, NodeInfo, Pull } from '../types';
import { Bar, StateBadge } from './bits';
import { ImageName, timing } from './PullList';

/** Average speed of a layer since its ingest started (the API gives no per-layer rate). */
export function layerSpeed(l: Layer): number | null {
  if (l.state !== 'downloading' && l.state !== 'done' && l.state !== 'stalled') return null;
  if (!l.startedAt || !l.updatedAt) return null;
  const dt = (Date.parse(l.updatedAt) - Date.parse(l.startedAt)) / 1000;
  if (!(dt > 0)) return null;
  return l.state === 'stalled' ? 0 : l.downloadedBytes / dt;
}

function Field({ k, children, testid }: { k: string; children: ReactNode; testid?: string }) {
  return (
    <div className="field" data-testid={testid}>
      <dt>{k}</dt>
      <dd className="num">{children}</dd>
    </div>
  );
}

export function PullDetails({
  id,
  pull,
  history,
  node,
  now,
  onClose,
}: {
  id: string;
  pull: Pull | null;
  history: HistoryEntry[];
  node: NodeInfo | null;
  now: number;
  onClose: () => void;
}) {
  const closeRef = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    closeRef.current?.focus({ preventScroll: true });
  }, [id]);
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') onClose();
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [onClose]);

  if (!pull) {
    return (
      <aside className="details" aria-label="Pull details" data-testid="details">
        <div className="details-head">
          <h2>Pull not found</h2>
          <button ref={closeRef} type="button" className="close" onClick={onClose} aria-label="Close details">
            ×
          </button>
        </div>
        <p className="muted">
          <code>{id}</code> is not (or no longer) in the server's tables.
        </p>
      </aside>
    );
  }
  const p = pull;
  const t = timing(p);
  const active = p.state === 'pulling' || p.state === 'stalled';
  const elapsed = active && p.startedAt ? (now - Date.parse(p.startedAt)) / 1000 : p.durationSeconds;
  const layers = p.layers;
  return (
    <aside className="details" aria-label="Pull details" data-testid="details" data-pull-id={p.id}>
      <div className="details-head">
        <h2>
          <ImageName image={p.image} />
        </h2>
        <button ref={closeRef} type="button" className="close" onClick={onClose} aria-label="Close details">
          ×
        </button>
      </div>
      <div className="details-body">
        <div className="details-state">
          <StateBadge state={p.state} />
          <span className="muted">
            on <strong>{p.node}</strong>
          </span>
          {node && node.state !== 'ok' && <span className="badge st-stalled">node {node.state}</span>}
        </div>
        {p.error && (
          <div className="error-box" role="alert" data-testid="pull-error">
            <strong>{p.error.reason}</strong>
            <p>{p.error.message}</p>
          </div>
        )}
        {p.resolvedError && (
          <div className="note-box" data-testid="pull-resolved-error">
            <strong>Earlier failure, resolved by a retry: {p.resolvedError.reason}</strong>
            <p>{p.resolvedError.message}</p>
          </div>
        )}
        <Bar percent={p.percent} state={p.state} label={`Progress of ${p.image ?? 'unknown image'}`} size="lg" />
        <dl className="fields">
          <Field k="progress" testid="d-percent">{formatPercent(p.percent)}</Field>
          <Field k="downloaded" testid="d-bytes">
            {formatBytes(p.downloadedBytes)} / {p.totalKnown ? formatBytes(p.totalBytes) : '?'}
          </Field>
          <Field k="speed">{active ? formatRate(p.bytesPerSecond) : DASH}</Field>
          <Field k={t.label}>{t.value}</Field>
          <Field k="elapsed">{formatDuration(elapsed)}</Field>
          <Field k="layers">
            {p.layersDone} / {p.layersTotal}
          </Field>
          <Field k="started">{formatTime(p.startedAt)}</Field>
          <Field k="completed">{formatTime(p.completedAt)}</Field>
          <Field k="manifest">
            <span title={p.manifestDigest ?? ''}>{shortDigest(p.manifestDigest)}</span>
          </Field>
          <Field k="index">
            <span title={p.indexDigest ?? ''}>{shortDigest(p.indexDigest)}</span>
          </Field>
          <Field k="source">{p.source}</Field>
          <Field k="kubelet says" testid="d-kubelet">
            {p.kubelet && p.kubelet.durationSeconds != null
              ? `pulled in ${formatDuration(p.kubelet.durationSeconds)}`
              : DASH}
          </Field>
          <Field k="id">
            <span className="wrap">{p.id}</span>
          </Field>
        </dl>

        <h3>
          Layers <span className="muted num">{layers ? layers.length : p.layersTotal}</span>
        </h3>
        {!layers ? (
          <p className="muted">Loading layers…</p>
        ) : layers.length === 0 ? (
          <p className="muted">No layers known (the manifest was not read).</p>
        ) : (
          <div className="table-wrap">
            <table className="layers" aria-label="Layers">
              <thead>
                <tr>
                  <th scope="col">Digest · media type</th>
                  <th scope="col" className="r">Size</th>
                  <th scope="col">Progress</th>
                  <th scope="col" className="r l-speed">Speed</th>
                  <th scope="col">State</th>
                </tr>
              </thead>
              <tbody>
                {layers.map((l) => (
                  <tr key={l.digest} data-digest={l.digest} data-state={l.state}>
                    <td className="l-name">
                      <span className="mono" title={l.digest}>
                        {shortDigest(l.digest)}
                      </span>
                      <span className="mt" title={l.mediaType ?? ''}>
                        {mediaTypeLabel(l.mediaType)}
                      </span>
                    </td>
                    <td className="r num">{formatBytes(l.totalBytes)}</td>
                    <td>
                      <div className="layer-bar">
                        <Bar percent={l.percent} state={l.state} label={`Layer ${shortDigest(l.digest)}`} size="sm" />
                        <span className="num">{formatPercent(l.percent)}</span>
                      </div>
                    </td>
                    <td className="r num l-speed">{active ? formatRate(layerSpeed(l)) : DASH}</td>
                    <td>
                      <StateBadge state={l.state} />
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}

        <h3>
          Pods <span className="muted num">{p.pods.length}</span>
        </h3>
        {p.pods.length === 0 ? (
          <p className="muted">No pod correlated yet (needs Kubernetes data).</p>
        ) : (
          <ul className="pods">
            {p.pods.map((x) => (
              <li key={`${x.namespace}/${x.name}/${x.container ?? ''}`}>
                <span className="muted">{x.namespace}/</span>
                {x.name}
                {x.container && <span className="muted"> · {x.container}</span>}
              </li>
            ))}
          </ul>
        )}

        <h3>Events</h3>
        {history.length === 0 ? (
          <p className="muted">No events since this page opened.</p>
        ) : (
          <ol className="events" aria-label="Events of this pull">
            {[...history].reverse().map((h, i) => (
              <li key={`${h.id ?? 'x'}-${i}`} className={`ev ev-${h.type.replace('.', '-')}`}>
                <time className="num">{formatTime(h.time)}</time> <span>{h.text}</span>
              </li>
            ))}
          </ol>
        )}
      </div>
    </aside>
  );
}
