import { useEffect, useMemo, useRef, useState, type ReactNode } from 'react';
import { api, type HistoryAlert } from '../api';
import { alertEvents, mergeEvents, recordEvents, serverEvents, withLive } from '../past';
import { layerTimeline, phasesOf } from '../phases';
import type { Series } from '../series';
import { TimeChart } from './TimeChart';
import { DASH, formatBytes, formatDuration, formatPercent, formatRate, formatTime, mediaTypeLabel, shortDigest } from '../format';
import type { HistoryEntry } from '../state';
import { containerdDown } from '../view';
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
  speed,
  node,
  now,
  onClose,
}: {
  id: string;
  pull: Pull | null;
  history: HistoryEntry[];
  speed: Series | undefined;
  node: NodeInfo | null;
  now: number;
  onClose: () => void;
}) {
  const closeRef = useRef<HTMLButtonElement>(null);
  useEffect(() => {
    closeRef.current?.focus({ preventScroll: true });
  }, [id]);
  // The pull's own past as the server kept it, loaded once when the panel opens; the
  // stream's events about it (history) follow it. Without it (an older server, or none kept),
  // the pull's record and the alerts the history kept about its node.
  const [past, setPast] = useState<{ id: string; entries: HistoryEntry[] | null } | null>(null);
  useEffect(() => {
    setPast(null);
    const ctrl = new AbortController();
    api
      .pullEvents(id, ctrl.signal)
      .then((events) => setPast({ id, entries: serverEvents(events) }))
      .catch(() => {
        if (!ctrl.signal.aborted) setPast({ id, entries: null });
      });
    return () => ctrl.abort();
  }, [id]);
  const kept = past?.id === id ? past.entries : undefined;
  const [alerts, setAlerts] = useState<HistoryAlert[]>([]);
  const node_ = kept === null || kept?.length === 0 ? pull?.node : undefined;
  useEffect(() => {
    setAlerts([]);
    if (!node_) return;
    const ctrl = new AbortController();
    api
      .alerts(new URLSearchParams({ node: node_, limit: '200' }).toString(), ctrl.signal)
      .then(setAlerts)
      .catch(() => undefined);
    return () => ctrl.abort();
  }, [id, node_]);
  const events = useMemo(() => {
    if (kept?.length) return withLive(kept, history);
    return pull ? mergeEvents(recordEvents(pull), alertEvents(pull.id, alerts), history) : history;
  }, [kept, pull, alerts, history]);
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
  // Only a pull in flight is frozen by it: a finished one is final whatever containerd does.
  const ctrdDown = active ? containerdDown(node) : null;
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
        {ctrdDown && (
          <div className="error-box" role="alert" data-testid="node-containerd-down">
            <strong>containerd unreachable on {p.node} since {formatTime(ctrdDown.since)}</strong>
            <p>
              {ctrdDown.error ?? DASH}. The agent cannot see this node's pulls: this one shows the last state it
              saw.
            </p>
          </div>
        )}
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

        <Phases pull={p} />

        {speed && speed.t.length >= 2 && (
          <>
            <h3>Speed</h3>
            <TimeChart x={speed.t} ys={[speed.v]} lines={SPEED_LINES} height={120} label="Speed of this pull over time" format={(v) => formatRate(v)} testid="speed-chart" />
          </>
        )}

        {layers && layers.length > 0 && <LayerTimeline pull={p} now={now} />}

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
        {events.length === 0 ? (
          <p className="muted">No events known for this pull.</p>
        ) : (
          <ol className="events" aria-label="Events of this pull">
            {[...events].reverse().map((h, i) => (
              <li key={`${h.id ?? 'x'}-${i}`} className={`ev ev-${h.type.replace('.', '-')}`} data-event-id={h.id ?? undefined}>
                <time className="num">{formatTime(h.time)}</time> <span>{h.text}</span>
              </li>
            ))}
          </ol>
        )}
      </div>
    </aside>
  );
}

const SPEED_LINES = [{ label: 'speed', color: '--pulling', fill: true }];

/** Where the pull's time went (phases.ts says how each is measured). */
function Phases({ pull }: { pull: Pull }) {
  const ph = phasesOf(pull);
  const parts = [
    { k: 'waiting', v: ph.waitingSeconds, title: "in kubelet's queue: its 'including waiting' less its pull time" },
    { k: 'downloading', v: ph.downloadingSeconds, title: "the agent's layers: first byte to last layer" },
    { k: 'unpacking', v: ph.unpackingSeconds, title: "from the agent's completion to kubelet's Pulled" },
  ];
  const total = parts.reduce((a, x) => a + (x.v ?? 0), 0);
  return (
    <>
      <h3>Phases</h3>
      {total > 0 && (
        <div className="phase-bar" role="img" aria-label={parts.map((x) => `${x.k} ${formatDuration(x.v)}`).join(', ')}>
          {parts.map((x) => (x.v ? <span key={x.k} className={`ph ph-${x.k}`} style={{ width: `${(100 * x.v) / total}%` }} /> : null))}
        </div>
      )}
      <dl className="fields" data-testid="phases">
        {parts.map((x) => (
          <div className="field" key={x.k} title={x.title} data-testid={`phase-${x.k}`}>
            <dt>
              <i className={`ph-key ph-${x.k}`} aria-hidden="true" /> {x.k}
            </dt>
            <dd className="num">{x.v == null ? (pull.state === 'pulling' || pull.state === 'stalled' ? 'in progress' : DASH) : formatDuration(x.v)}</dd>
          </div>
        ))}
      </dl>
    </>
  );
}

/** Each layer's download as a bar on the pull's time axis; cached layers marked, not drawn. */
function LayerTimeline({ pull, now }: { pull: Pull; now: number }) {
  const { bars, span } = layerTimeline(pull, now);
  return (
    <>
      <h3>
        Layer timeline <span className="muted num">0 – {formatDuration(span)}</span>
      </h3>
      <ol className="timeline" aria-label="Layer timeline" data-testid="layer-timeline">
        {bars.map((b) => (
          <li key={b.digest} className="tl-row" data-state={b.state}>
            <span className="mono tl-name" title={b.digest}>{shortDigest(b.digest, 8)}</span>
            <span className="tl-track">
              {b.start == null ? (
                <span className={`tl-mark st-${b.state}`}>{b.state === 'cached' ? 'cached' : b.state}</span>
              ) : (
                <span
                  className={`tl-bar st-${b.state}`}
                  style={{ left: `${(100 * b.start) / span}%`, width: `${Math.max(0.5, (100 * ((b.end ?? b.start) - b.start)) / span)}%` }}
                  title={`${formatDuration(b.start)} → ${formatDuration(b.end)} · ${formatBytes(b.totalBytes)}`}
                />
              )}
            </span>
          </li>
        ))}
      </ol>
    </>
  );
}
